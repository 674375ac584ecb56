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
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
                    // Well inside EMAIL_LEASE, so no other replica takes a send in progress.
                    .timeout(Some(SMTP_TIMEOUT))
                    .build(),
            )),
            None => {
                std::fs::create_dir_all(&dir)?;
                Ok(Mailer::Files(dir))
            }
        }
    }

    async fn send(&self, from: &Mailbox, e: &db::Email) -> anyhow::Result<()> {
        let message = Message::builder()
            // The same Message-ID on every attempt: a message that is sent again (the process
            // died between the server's acceptance and marking it sent) is recognisably the
            // same message to every mail system and reader.
            .message_id(Some(format!("<{}@connectability>", e.id)))
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

/// Send attempts by outcome (`sent`, `failed`): failures are retried with backoff.
static EMAILS: std::sync::LazyLock<prometheus::IntCounterVec> = std::sync::LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "connectability_email_sends_total",
        "Email send attempts by outcome (sent, failed)",
        &["outcome"]
    )
    .expect("registered once")
});

/// How long a replica holds an email it is sending: longer than any send can take (every
/// SMTP command times out after [`SMTP_TIMEOUT`]); a replica that dies holding it leaves the
/// email to be sent again after this.
pub const EMAIL_LEASE: Duration = Duration::from_secs(60);

/// Per SMTP command.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at an email before it is parked (with backoff doubling from 1 s up to the
/// service's `max_backoff`: about 13 minutes at the default 5-minute cap).
pub const MAX_EMAIL_ATTEMPTS: i64 = 10;

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
    /// A mail worker over `db`'s emails: SMTP at `smtp_url`, else `.eml` files in `dir`.
    pub fn new(
        db: Db,
        smtp_url: Option<&str>,
        dir: PathBuf,
        from: &str,
        max_backoff: Duration,
    ) -> anyhow::Result<Self> {
        // Both series exist from the start, so a rate reads 0 rather than nothing.
        for outcome in ["sent", "failed"] {
            EMAILS.with_label_values(&[outcome]);
        }
        Ok(Self {
            db,
            mailer: Mailer::new(smtp_url, dir)?,
            from: from.parse()?,
            wake: Arc::default(),
            max_backoff,
        })
    }

    fn backoff_ms(&self, attempts: i64) -> i64 {
        let ms = 1000i64.saturating_mul(1 << attempts.clamp(0, 20));
        ms.min(self.max_backoff.as_millis() as i64)
    }

    /// One pass: every due email once. Returns how many were sent.
    pub async fn send_due(&self) -> anyhow::Result<usize> {
        let mut conn = self.db.pool().acquire().await?;
        let due = db::due_emails(&mut conn, now_ms(), 100).await?;
        let mut sent = 0;
        for email in due {
            // Every replica reads the same due emails; only the one whose lease lands sends.
            let now = now_ms();
            if !db::lease_email(
                &mut conn,
                &email.id,
                now,
                now + EMAIL_LEASE.as_millis() as i64,
            )
            .await?
            {
                continue;
            }
            let span = tracing::info_span!("send email", email = %email.id);
            connectability_platform::telemetry::set_parent_from(
                &span,
                email.traceparent.as_deref(),
            );
            let result =
                tracing::Instrument::instrument(self.mailer.send(&self.from, &email), span).await;
            match result {
                Ok(()) => {
                    // On the connection already in hand: the gap between the server accepting
                    // the message and this mark is the one window in which a crash sends it
                    // twice (SMTP has no idempotency key), so nothing else waits in it.
                    EMAILS.with_label_values(&["sent"]).inc();
                    if let Err(e) = db::email_sent(&mut conn, &email.id, now_ms()).await {
                        // The server has the message: keep trying to record that, or it goes
                        // out again once the lease ends (the database restarting, say).
                        drop(conn);
                        self.mark_sent_eventually(&email.id, e).await?;
                        conn = self.db.pool().acquire().await?;
                    }
                    sent += 1;
                }
                Err(e) => {
                    EMAILS.with_label_values(&["failed"]).inc();
                    let attempts = email.attempts + 1;
                    let error: String = format!("{e:#}").chars().take(2_000).collect();
                    let now = now_ms();
                    let next = now + self.backoff_ms(email.attempts);
                    if attempts < MAX_EMAIL_ATTEMPTS {
                        tracing::warn!(email = %email.id, attempt = attempts, error = %error, "email not sent; will retry");
                        db::email_failed(&mut conn, &email.id, &error, next, None).await?;
                    } else {
                        tracing::error!(email = %email.id, attempts, error = %error, "email parked after its last attempt; see `connectability dead-letters`");
                        let mut tx = self.db.begin().await?;
                        db::email_failed(&mut tx, &email.id, &error, next, Some(now)).await?;
                        db::dead_letter_email(&mut tx, &email, &error, attempts, now).await?;
                        tx.commit().await?;
                    }
                }
            }
        }
        Ok(sent)
    }

    /// Retries marking an email sent for up to half its lease (a fresh connection each
    /// time, since the failed one may be gone).
    async fn mark_sent_eventually(&self, id: &str, first: sqlx::Error) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + EMAIL_LEASE / 2;
        let mut last = first;
        while std::time::Instant::now() < deadline {
            tracing::warn!(email = %id, error = %last, "email sent but not yet marked; retrying the mark");
            tokio::time::sleep(Duration::from_millis(250)).await;
            let marked = match self.db.pool().acquire().await {
                Ok(mut conn) => db::email_sent(&mut conn, id, now_ms()).await,
                Err(e) => Err(e),
            };
            match marked {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(anyhow::anyhow!(last).context(format!("marking email {id} sent")))
    }

    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = db::unpark_requested_emails(&self.db, now_ms()).await {
                tracing::warn!(error = %e, "replaying parked emails failed");
            }
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
