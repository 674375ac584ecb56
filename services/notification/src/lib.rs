//! The `notification` service: consumes the other services' events and tells the right
//! people, once each, in their inbox and by email (rules N1-N8).
//!
//! Layout as in every service: `api` (thin gRPC layer), `domain` (the matrix and recipient
//! rules), `db` (all SQL), `events` (what it consumes), plus `mailer` (SMTP or `.eml` files).

mod api;
mod db;
pub mod domain;
mod events;
pub mod mailer;

use std::{path::PathBuf, sync::Arc, time::Duration};

use connectability_events::{EventBus, RetryPolicy, SubscriptionSpec};
use connectability_platform::{
    CommonConfig, GrpcServer,
    clock::{Clock, SystemClock},
    directory::DirectoryGateway,
    standalone::Standalone,
};
use connectability_proto::notifications::v1::notification_service_server::NotificationServiceServer;
use connectability_store::{Db, ServiceMigrations, inbox};

pub use api::NotificationApi;

pub const NAME: &str = "notification";

/// The DDL is portable, so both backends share one folder.
pub fn migrations() -> ServiceMigrations {
    ServiceMigrations {
        postgres: sqlx::migrate!("./migrations"),
        sqlite: sqlx::migrate!("./migrations"),
        libraries: Vec::new(),
    }
}

/// How mail goes out.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// SMTP URL; `None` writes `.eml` files to `dir`.
    pub smtp_url: Option<String>,
    pub dir: PathBuf,
    pub from: String,
    pub base_url: String,
    /// Longest wait between retries of a failing send.
    pub max_backoff: Duration,
    pub retention: Retention,
}

/// How long the service's own growing tables keep rows (beside the inbox and request ids
/// every service prunes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days a notification is kept (once its email, if any, has been sent and pruned).
    pub notifications_days: u64,
    /// Days a sent email's row is kept.
    pub sent_emails_days: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            notifications_days: 365,
            sent_emails_days: 90,
        }
    }
}

impl Retention {
    /// Sent emails first; a notification goes once no email row refers to it (an unsent
    /// email keeps its notification, whatever its age).
    pub fn rules(&self) -> Vec<connectability_store::retention::Rule> {
        let days = |n: u64| Duration::from_secs(n * 24 * 3600);
        vec![
            connectability_store::retention::Rule {
                name: "emails",
                delete: "DELETE FROM emails WHERE id IN
                           (SELECT id FROM emails WHERE sent_ms IS NOT NULL AND sent_ms < $1 LIMIT $2)",
                keep: days(self.sent_emails_days),
            },
            connectability_store::retention::Rule {
                name: "notifications",
                delete: "DELETE FROM notifications WHERE id IN
                           (SELECT n.id FROM notifications n WHERE n.create_ms < $1
                              AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.id = n.id) LIMIT $2)",
                keep: days(self.notifications_days),
            },
        ]
    }
}

/// The service's parts: API, consumers and the mail worker.
pub struct Notification {
    pub api: NotificationApi,
    subscriptions: Vec<inbox::InboxSubscription>,
    outgoing: mailer::Outgoing,
    retention: Retention,
}

impl Notification {
    /// Wires the service and subscribes its consumers (before any relay runs).
    pub async fn start(
        db: Db,
        bus: Arc<dyn EventBus>,
        directory: DirectoryGateway,
        clock: Arc<dyn Clock>,
        mail: MailSettings,
    ) -> anyhow::Result<Self> {
        let wake = Arc::new(tokio::sync::Notify::new());
        let handler = Arc::new(events::NotificationEvents {
            directory: directory.clone(),
            clock: clock.clone(),
            mail: wake.clone(),
            base_url: mail.base_url.clone(),
        });
        let spec = |durable: &str, context: &str| SubscriptionSpec {
            durable: durable.into(),
            context: context.into(),
            retry: RetryPolicy::default(),
        };
        let subscriptions = vec![
            inbox::subscribe(
                bus.as_ref(),
                db.clone(),
                spec("notification-connections", "connections"),
                handler.clone(),
            )
            .await?,
            inbox::subscribe(
                bus.as_ref(),
                db.clone(),
                spec("notification-drawings", "drawings"),
                handler.clone(),
            )
            .await?,
            inbox::subscribe(
                bus.as_ref(),
                db.clone(),
                spec("notification-rfis", "rfis"),
                handler.clone(),
            )
            .await?,
            inbox::subscribe(
                bus.as_ref(),
                db.clone(),
                spec("notification-submittals", "submittals"),
                handler.clone(),
            )
            .await?,
        ];
        let outgoing = mailer::Outgoing {
            wake,
            ..mailer::Outgoing::new(
                db.clone(),
                mail.smtp_url.as_deref(),
                mail.dir.clone(),
                &mail.from,
                mail.max_backoff,
            )?
        };
        Ok(Self {
            api: NotificationApi::new(db, directory, handler, clock),
            subscriptions,
            outgoing,
            retention: mail.retention,
        })
    }

    pub fn mount(self, server: &mut GrpcServer, max_message_bytes: usize) {
        let outgoing = self.outgoing;
        // No relay (it raises no events), but consumers that may dead-letter.
        server
            .metrics()
            .add_sampler(Arc::new(connectability_platform::metrics::StoreSampler {
                service: NAME,
                db: outgoing.db.clone(),
            }));
        server.add_retention(outgoing.db.clone(), self.retention.rules());
        server.add_task(move |stop| outgoing.run(stop));
        for sub in self.subscriptions {
            server.add_task(move |stop| async move {
                connectability_platform::server::wait_for(stop).await;
                sub.stop().await;
            });
        }
        server.add_service(
            NotificationServiceServer::new(self.api)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
        );
    }
}

/// Settings of the standalone binary (and `connectability serve notification`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// This service's own database.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/notification.db"
    )]
    pub database_url: String,
    /// SMTP server, e.g. `smtp://user:pass@mail.example.com:587?tls=required`. Unset: write
    /// `.eml` files to MAIL_DIR instead.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    #[arg(long, env = "MAIL_DIR", default_value = "data/mail")]
    pub mail_dir: PathBuf,
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "Connectability <no-reply@connectability.local>"
    )]
    pub mail_from: String,
    /// Links in messages start with this URL.
    #[arg(long, env = "NOTIFY_BASE_URL", default_value = "http://localhost:8080")]
    pub base_url: String,
    #[arg(long, env = "DIRECTORY_URL", default_value = "http://127.0.0.1:50051")]
    pub directory_url: String,
    /// Days a notification is kept.
    #[arg(long, env = "RETENTION_NOTIFICATIONS_DAYS", default_value_t = 365)]
    pub retention_notifications_days: u64,
    /// Days a sent email's row is kept.
    #[arg(long, env = "RETENTION_SENT_EMAILS_DAYS", default_value_t = 90)]
    pub retention_sent_emails_days: u64,
    #[command(flatten)]
    pub common: CommonConfig,
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let mut app =
        Standalone::start(NAME, &config.common, &config.database_url, &migrations()).await?;
    let directory = app.directory(&config.directory_url, Duration::from_secs(2))?;
    let mail = MailSettings {
        smtp_url: config.smtp_url,
        dir: config.mail_dir,
        from: config.mail_from,
        base_url: config.base_url,
        max_backoff: Duration::from_secs(300),
        retention: Retention {
            notifications_days: config.retention_notifications_days,
            sent_emails_days: config.retention_sent_emails_days,
        },
    };
    let max = app.max_message_bytes();
    Notification::start(
        app.db.clone(),
        app.bus.clone(),
        directory,
        Arc::new(SystemClock),
        mail,
    )
    .await?
    .mount(&mut app.server, max);
    app.serve().await
}

/// Pieces for tests that drive the event handler directly (redelivery checks).
pub mod testing {
    use std::sync::Arc;

    use connectability_platform::{clock::Clock, directory::DirectoryGateway};
    use connectability_store::inbox::InboxHandler;

    /// The service's event handler, as its consumers run it.
    pub fn handler(directory: DirectoryGateway, clock: Arc<dyn Clock>) -> Arc<dyn InboxHandler> {
        Arc::new(crate::events::NotificationEvents {
            directory,
            clock,
            mail: Arc::default(),
            base_url: "https://connectability.test".into(),
        })
    }
}
