//! How a tool service starts on its own (`connectability serve <tool>`): the settings every
//! synced tool takes, and the [`Foundation`] they give.

use std::{sync::Arc, time::Duration};

use connectability_blobs::Blobs;
use connectability_platform::{CommonConfig, clock::SystemClock, standalone::Standalone};
use connectability_store::ServiceMigrations;

use crate::Foundation;

/// Settings of every synced tool service; a tool's `Config` flattens these and adds its own.
#[derive(Debug, Clone, clap::Args)]
pub struct ToolConfig {
    /// This service's own database: `postgres://…`, or a SQLite file (default
    /// `sqlite://data/<service>.db`).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where files live: `file://PATH` or `s3://BUCKET/PREFIX`.
    #[arg(long, env = "BLOBS_URL", default_value = "file://data/blobs")]
    pub blobs_url: String,
    /// Largest accepted file, in bytes.
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Where the directory service answers.
    #[arg(long, env = "DIRECTORY_URL", default_value = "http://127.0.0.1:50051")]
    pub directory_url: String,
    /// Where connection-manager answers (connection events are confirmed with it).
    #[arg(
        long,
        env = "CONNECTIONS_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub connections_url: String,
    /// How long directory answers are cached, in milliseconds.
    #[arg(long, env = "DIRECTORY_CACHE_TTL_MS", default_value_t = 2000)]
    pub directory_cache_ttl_ms: u64,
    /// Attempts at a failing copy before it is parked (its connection then shows FAILED
    /// until an operator replays it); waits between them double from 1 s up to 5 min.
    #[arg(long, env = "COPY_MAX_ATTEMPTS", default_value_t = 10)]
    pub copy_max_attempts: i64,
    #[command(flatten)]
    pub common: CommonConfig,
}

impl ToolConfig {
    /// Starts the standalone process of tool service `name` (auth, migrated database, bus,
    /// metrics) and the foundation its engine and API run on, with `name`'s identity
    /// towards the directory and connection-manager.
    pub async fn standalone(
        &self,
        name: &'static str,
        migrations: &ServiceMigrations,
    ) -> anyhow::Result<(Standalone, Foundation)> {
        let database_url = self
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://data/{name}.db"));
        let app = Standalone::start(name, &self.common, &database_url, migrations).await?;
        let base = Foundation {
            db: app.db.clone(),
            bus: app.bus.clone(),
            blobs: Blobs::from_url(&self.blobs_url)?,
            clock: Arc::new(SystemClock),
            connections: app.connections(&self.connections_url)?,
            directory: app.directory(
                &self.directory_url,
                Duration::from_millis(self.directory_cache_ttl_ms),
            )?,
            work_retry: crate::WorkRetry {
                max_attempts: self.copy_max_attempts.max(1),
                ..Default::default()
            },
        };
        Ok((app, base))
    }
}

/// A tool service's migrations: the tool's own folder (`./migrations` of the crate that
/// invokes this; the DDL is portable, so both backends share it) after the engine's.
#[macro_export]
macro_rules! tool_migrations {
    () => {
        ::connectability_store::ServiceMigrations {
            postgres: ::sqlx::migrate!("./migrations"),
            sqlite: ::sqlx::migrate!("./migrations"),
            libraries: vec![$crate::migrations()],
        }
    };
}

/// A tool service's parts and wiring, the same for every tool: the struct `$service`
/// holding the tool's API and the engine's workers, `start` (the engine started for
/// `$tool`, then the API made by `$make_api` from the foundation `$base`, the engine's relay
/// waker `$relay` and `start`'s own arguments) and `mount` (the workers and the gRPC
/// service `$server` with the process's message size).
///
/// ```ignore
/// connectability_sync::tool_service! {
///     DrawingsSync(sync::DrawingSync, DrawingApi, DrawingServiceServer)
///     start(limits: Limits) => |base, relay| DrawingApi::new(base, relay, limits)
/// }
/// ```
#[macro_export]
macro_rules! tool_service {
    (
        $service:ident($($tool:ident)::+, $api:ty, $server:ident)
        start($($arg:ident: $ty:ty),* $(,)?) => |$base:ident, $relay:ident| $make_api:expr
    ) => {
        /// The service's parts: the API, and the engine's relay, consumers and workers.
        pub struct $service {
            pub api: $api,
            workers: $crate::Workers<$($tool)::+>,
        }

        impl $service {
            /// Wires the service and subscribes its consumers (before any relay runs, so
            /// in-process events are not missed).
            pub async fn start(
                base: $crate::Foundation,
                $($arg: $ty),*
            ) -> ::anyhow::Result<Self> {
                let workers = $crate::Workers::start(NAME, base.clone(), $($tool)::+).await?;
                let api = {
                    let $base = &base;
                    let $relay = workers.relay_waker();
                    $make_api
                };
                Ok(Self { api, workers })
            }

            /// Mounts the gRPC service and the engine's relay, consumers and workers.
            pub fn mount(
                self,
                server: &mut ::connectability_platform::GrpcServer,
                max_message_bytes: usize,
            ) {
                self.workers.mount(server);
                server.add_service(
                    $server::new(self.api)
                        .max_decoding_message_size(max_message_bytes)
                        .max_encoding_message_size(max_message_bytes),
                );
            }
        }
    };
}
