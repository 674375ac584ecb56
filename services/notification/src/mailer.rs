//! Email delivery: SMTP through lettre when `SMTP_URL` is set (production), otherwise `.eml`
//! files in a folder (the embedded default, so `make run` shows real messages). A worker
//! sends due emails, retries failures with backoff, and never sends a sent one again.

use std::{path::PathBuf, sync::Arc, time::Duration};

use connectability_store::{Db, now_ms};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};

use crate::db;

pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

impl Mailer {
    /// `smtp://host:port` (plain, for local relays), `smtp://user:pass@host:587?tls=required`
    /// or `smtps://…` (TLS); without a URL, `.eml` files in `dir`.
    pub fn new(smtp_url: Option<&str>, dir: PathBuf) -> anyhow::Result<Self> {
        match smtp_url.filter(|u| !u.is_empty()) {
            Some(url) => Ok(Mailer::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build(),
            )),
            None => {
                std::fs::create_dir_all(&dir)?;
                Ok(Mailer::Files(dir))
            }
        }
    }

    async fn send(&self, from: &Mailbox, e: &db::Email) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(from.clone())
            .to(e.to_address.parse()?)
            .subject(e.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                e.text_body.clone(),
                e.html_body.clone(),
            ))?;
        match self {
            Mailer::Smtp(transport) => {
                transport.send(message).await?;
            }
            Mailer::Files(dir) => {
                let path = dir.join(format!("{}.eml", e.id));
                tokio::fs::write(&path, message.formatted()).await?;
            }
        }
        Ok(())
    }
}

/// Sends due emails until `shutdown`. Retries are scheduled by the wall clock: they are
/// about the mail server's health, not about any rule of the product.
pub struct Outgoing {
    pub db: Db,
    pub mailer: Mailer,
    pub from: Mailbox,
    pub wake: Arc<tokio::sync::Notify>,
    pub max_backoff: Duration,
}

impl Outgoing {
    fn backoff_ms(&self, attempts: i64) -> i64 {
        let ms = 1000i64.saturating_mul(1 << attempts.clamp(0, 20));
        ms.min(self.max_backoff.as_millis() as i64)
    }

    /// One pass: every due email once. Returns how many were sent.
    pub async fn send_due(&self) -> anyhow::Result<usize> {
        let due = db::due_emails(&mut *self.db.pool().acquire().await?, now_ms(), 100).await?;
        let mut sent = 0;
        for email in due {
            match self.mailer.send(&self.from, &email).await {
                Ok(()) => {
                    db::email_sent(&mut *self.db.pool().acquire().await?, &email.id, now_ms())
                        .await?;
                    sent += 1;
                }
                Err(e) => {
                    tracing::warn!(email = %email.id, attempt = email.attempts + 1, error = %e, "email not sent; will retry");
                    let next = now_ms() + self.backoff_ms(email.attempts);
                    db::email_failed(
                        &mut *self.db.pool().acquire().await?,
                        &email.id,
                        &e.to_string(),
                        next,
                    )
                    .await?;
                }
            }
        }
        Ok(sent)
    }

    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.send_due().await {
                tracing::warn!(error = %e, "mail worker failed; retrying");
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}
