//! `spawn_app()` for gRPC: start any set of services on port 0 against fresh databases (a
//! temp SQLite file, or a new uniquely named Postgres database) and a unique event prefix,
//! and get ready clients back.
//!
//! Backends: [`Backend::Embedded`] (SQLite + in-process events) always runs.
//! [`Backend::production`] gives Postgres + NATS JetStream when both answer; when they do
//! not, it fails the test under `CI=true` and otherwise reports the skip on stderr.
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and
//! `TEST_NATS_URL` (default `nats://127.0.0.1:4222`) say where they are.

pub mod s3;

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use connectability::catalog;
use connectability_auth::{BearerToken, Issuer};
use connectability_events::EventBus;
use connectability_platform::{
    DEV_ONLY_HS256_SECRET, GrpcServer, clock::ManualClock, metrics::Metrics,
};
use connectability_proto::{
    connections::v1::connection_service_client::ConnectionServiceClient,
    directory::v1::directory_service_client::DirectoryServiceClient,
    drawings::v1::drawing_service_client::DrawingServiceClient,
    notifications::v1::notification_service_client::NotificationServiceClient,
    rfis::v1::rfi_service_client::RfiServiceClient,
    submittals::v1::submittal_service_client::SubmittalServiceClient,
};
use connectability_store::Db;
use sqlx::AssertSqlSafe;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

pub use connectability_auth::Claims;

/// Where a test's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files in a temp folder + in-process events.
    Embedded,
    /// Postgres + NATS JetStream.
    Production {
        database_url: String,
        nats_url: String,
    },
}

/// How long test resources (databases, streams) of earlier runs are kept before cleanup.
const STALE_AFTER_SECS: u64 = 2 * 3600;

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "sqlite+inproc",
            Backend::Production { .. } => "postgres+nats",
        }
    }

    /// Postgres + NATS if both answer. Under `CI=true` an unreachable one fails the test;
    /// elsewhere the skip is reported on stderr and `None` returned.
    pub async fn production() -> Option<Backend> {
        let database_url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let nats_url =
            std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let problem = match Db::connect(&database_url).await {
            Err(e) => Some(format!("Postgres at {database_url}: {e:#}")),
            Ok(db) => {
                db.close().await;
                match async_nats::connect(&nats_url).await {
                    Err(e) => Some(format!("NATS at {nats_url}: {e}")),
                    Ok(_) => None,
                }
            }
        };
        match problem {
            None => Some(Backend::Production {
                database_url,
                nats_url,
            }),
            Some(p) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true requires the postgres+nats backend, but it is unreachable: {p}")
            }
            Some(p) => {
                eprintln!("SKIPPED on postgres+nats (unreachable: {p})");
                None
            }
        }
    }
}

/// Fresh storage and a private event namespace for one test.
pub struct TestEnv {
    pub backend: Backend,
    /// Unique subject/stream prefix of this test.
    pub prefix: String,
    pub bus: Arc<dyn EventBus>,
    /// This test's own temp folder (SQLite files, blobs).
    pub dir: PathBuf,
}

/// A test's folder, Postgres databases and JetStream streams go with it: a full run
/// creates about a thousand databases (≈ 7 MB each) and gigabytes of uploads, enough to fill
/// a shared disk before the next run's age-based cleanup. `KEEP_TEST_DIRS=1` keeps them all
/// for a post-mortem.
impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_some() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Backend::Production {
            database_url,
            nats_url,
        } = &self.backend
        {
            // Drop runs inside the test's runtime, which cannot be blocked on; a thread with
            // its own small runtime does the async cleanup, and is waited for so the next
            // test starts on a clean server.
            let (database_url, nats_url, prefix) =
                (database_url.clone(), nats_url.clone(), self.prefix.clone());
            let cleanup = std::thread::spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async {
                    let work = async {
                        drop_databases(&database_url, &prefix).await;
                        drop_streams(&nats_url, &prefix).await;
                    };
                    if tokio::time::timeout(Duration::from_secs(20), work)
                        .await
                        .is_err()
                    {
                        eprintln!("test cleanup of {prefix} timed out; a later run removes it");
                    }
                });
            });
            let _ = cleanup.join();
        }
    }
}

/// Drops this test's databases (those named `{prefix}_…`), closing any connection still open.
/// (`datname::text`: sqlx's Any driver cannot decode Postgres's `name` type; reading it
/// uncast once made every cleanup silently find nothing.)
async fn drop_databases(database_url: &str, prefix: &str) {
    let Ok(admin) = Db::connect(database_url).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)")
            .bind(format!("{prefix}_"))
            .fetch_all(admin.pool())
            .await
            .unwrap_or_default();
    for name in names {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(admin.pool())
        .await;
    }
    admin.close().await;
}

/// Deletes this test's JetStream streams (named with its prefix).
async fn drop_streams(nats_url: &str, prefix: &str) {
    use futures_lite::StreamExt as _;
    let Ok(client) = async_nats::connect(nats_url).await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    let mut names = js.stream_names();
    let mut ours = Vec::new();
    while let Some(Ok(name)) = names.next().await {
        if name.starts_with(prefix) {
            ours.push(name);
        }
    }
    for name in ours {
        let _ = js.delete_stream(&name).await;
    }
}

impl TestEnv {
    pub async fn new(backend: Backend) -> TestEnv {
        let prefix = format!(
            "ct{}x{}",
            unix_secs(),
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        );
        let dir = std::env::temp_dir()
            .join("connectability-tests")
            .join(&prefix);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let bus = match &backend {
            Backend::Embedded => connectability_events::connect("inproc:", &prefix).await,
            Backend::Production { nats_url, .. } => {
                cleanup_stale_streams(nats_url).await;
                connectability_events::connect(nats_url, &prefix).await
            }
        }
        .expect("event bus");
        TestEnv {
            backend,
            prefix,
            bus,
            dir,
        }
    }

    /// A new, empty database named after `name` (not yet migrated).
    pub async fn fresh_db(&self, name: &str) -> Db {
        Db::connect(&self.fresh_db_url(name).await)
            .await
            .expect("test database")
    }

    /// Creates a new, empty database named after `name` and returns its URL (for services
    /// run as processes).
    pub async fn fresh_db_url(&self, name: &str) -> String {
        match &self.backend {
            Backend::Embedded => format!("sqlite://{}/{name}.db", self.dir.display()),
            Backend::Production { database_url, .. } => {
                let admin = Db::connect(database_url)
                    .await
                    .expect("postgres admin connection");
                cleanup_stale_databases(&admin).await;
                let db_name = format!("{}_{name}", self.prefix).replace('-', "_");
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{db_name}\"")))
                    .execute(admin.pool())
                    .await
                    .expect("create test database");
                admin.close().await;
                replace_db_name(database_url, &db_name)
            }
        }
    }

    /// A new database with `migrations` applied.
    pub async fn migrated_db(
        &self,
        name: &str,
        migrations: &connectability_store::ServiceMigrations,
    ) -> Db {
        let db = self.fresh_db(name).await;
        db.migrate(migrations).await.expect("migrations");
        db
    }
}

fn replace_db_name(url: &str, db_name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map(|(b, q)| (b, Some(q)))
        .unwrap_or((url, None));
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map(|j| j + 2).unwrap_or(0) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{db_name}?{q}"),
        None => format!("{base}/{db_name}"),
    }
}

fn unix_secs() -> u64 {
    connectability_auth::unix_now()
}

/// The creation time encoded in a test prefix (`ct<secs>x…`), if it is one.
fn prefix_age_secs(name: &str) -> Option<u64> {
    let rest = name.to_ascii_lowercase();
    let rest = rest.strip_prefix("ct")?;
    let secs: u64 = rest.split('x').next()?.parse().ok()?;
    Some(unix_secs().saturating_sub(secs))
}

async fn cleanup_stale_databases(admin: &Db) {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE 'ct%'")
                .fetch_all(admin.pool())
                .await
                .unwrap_or_default();
        for name in names
            .into_iter()
            .filter(|n| prefix_age_secs(n).is_some_and(|a| a > STALE_AFTER_SECS))
        {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(admin.pool())
            .await;
        }
    })
    .await;
}

async fn cleanup_stale_streams(nats_url: &str) {
    use futures_lite::StreamExt as _;
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let Ok(client) = async_nats::connect(nats_url).await else {
            return;
        };
        let js = async_nats::jetstream::new(client);
        let mut names = js.stream_names();
        let mut stale = Vec::new();
        while let Some(Ok(name)) = names.next().await {
            if prefix_age_secs(&name).is_some_and(|a| a > STALE_AFTER_SECS) {
                stale.push(name);
            }
        }
        for name in stale {
            let _ = js.delete_stream(&name).await;
        }
    })
    .await;
}

/// A service the test app can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Directory,
    /// Needs the directory and drawings-sync in the same app (it calls them over gRPC).
    ConnectionManager,
    /// Needs the directory in the same app.
    DrawingsSync,
    /// Needs the directory and drawings-sync in the same app (it calls them over gRPC).
    RfiSync,
    /// Needs the directory in the same app.
    SubmittalSync,
    /// Needs the directory in the same app. Mail goes to `Options::smtp_url`, else to
    /// `.eml` files in `<test dir>/mail`.
    Notification,
}

impl Service {
    /// Its name in the composition root (`connectability::catalog`).
    pub fn name(self) -> &'static str {
        match self {
            Service::Directory => directory::NAME,
            Service::ConnectionManager => connection_manager::NAME,
            Service::DrawingsSync => drawings_sync::NAME,
            Service::RfiSync => rfi_sync::NAME,
            Service::SubmittalSync => submittal_sync::NAME,
            Service::Notification => notification::NAME,
        }
    }

    /// Its entry in the composition root.
    pub fn entry(self) -> &'static catalog::Service {
        catalog::find(self.name()).expect("every test service is in the catalog")
    }

    /// Every service, for tests that reach every RPC.
    pub const ALL: &[Service] = &[
        Service::Directory,
        Service::ConnectionManager,
        Service::DrawingsSync,
        Service::RfiSync,
        Service::SubmittalSync,
        Service::Notification,
    ];
}

/// How a test app is set up beyond its services.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Shutdown grace period (NOT_SERVING before closing).
    pub grace: Duration,
    pub drawings: drawings_sync::Limits,
    pub rfis: rfi_sync::Limits,
    pub submittals: submittal_sync::Limits,
    /// SMTP server for the notification service (`smtp://127.0.0.1:PORT`).
    pub smtp_url: Option<String>,
    /// Copy retries; by default [`FAST_WORK_RETRY`].
    pub work_retry: Option<connectability_sync::WorkRetry>,
    /// Where files go; by default a folder in the test's temp folder. An S3 store:
    /// [`s3::S3Store::blobs`].
    pub blobs: Option<connectability_blobs::Blobs>,
}

/// Tests' copy retries: as many attempts as in production, with short waits (a failing
/// item is parked after about five seconds).
pub const FAST_WORK_RETRY: connectability_sync::WorkRetry = connectability_sync::WorkRetry {
    max_attempts: 10,
    first_backoff: Duration::from_millis(50),
    max_backoff: Duration::from_secs(1),
    lease: Duration::from_secs(10),
};

/// Services running on port 0 with fresh storage, and clients for them.
pub struct TestApp {
    pub addr: SocketAddr,
    pub env: TestEnv,
    pub issuer: Issuer,
    /// What the app's services share (bus, files, peers, clock, limits, mail).
    process: catalog::InProcess,
    /// Each running service's database, for assertions on stored state.
    pub dbs: Vec<(Service, Db)>,
    /// The server's metrics registry.
    pub metrics: Metrics,
    /// The services' clock: `app.clock.advance(…)` moves time for them.
    pub clock: ManualClock,
    channel: Channel,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub type AuthedChannel = InterceptedService<Channel, BearerToken>;

impl TestApp {
    /// Starts `services` in one server on 127.0.0.1:0 (HS256 dev secret) on `backend`.
    pub async fn spawn(backend: Backend, services: &[Service]) -> TestApp {
        Self::spawn_with_grace(backend, services, Duration::ZERO).await
    }

    /// Like [`TestApp::spawn`], with a shutdown grace period (NOT_SERVING before closing).
    pub async fn spawn_with_grace(
        backend: Backend,
        services: &[Service],
        grace: Duration,
    ) -> TestApp {
        Self::spawn_with(
            backend,
            services,
            Options {
                grace,
                ..Default::default()
            },
        )
        .await
    }

    /// Like [`TestApp::spawn`], with [`Options`].
    pub async fn spawn_with(backend: Backend, services: &[Service], options: Options) -> TestApp {
        let grace = options.grace;
        let env = TestEnv::new(backend).await;
        let verifier = connectability_auth::Verifier::hs256(DEV_ONLY_HS256_SECRET.as_bytes());
        let issuer = Issuer::hs256(DEV_ONLY_HS256_SECRET.as_bytes());
        let metrics = Metrics::new();
        let clock = ManualClock::new();
        let mut server = GrpcServer::new(verifier, metrics.clone());
        // Bound first: services call each other through this address.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        // Services reach each other through this app's own address, with no directory
        // cache (tests change levels and look at once).
        let process = catalog::InProcess {
            bus: env.bus.clone(),
            blobs: options.blobs.clone().unwrap_or_else(|| {
                connectability_blobs::Blobs::from_url(&format!(
                    "file://{}",
                    env.dir.join("blobs").display()
                ))
                .expect("blobs folder")
            }),
            peers: lazy_channel(addr),
            issuer: Issuer::hs256(DEV_ONLY_HS256_SECRET.as_bytes()),
            clock: Arc::new(clock.clone()),
            directory_cache: Duration::ZERO,
            drawings: options.drawings,
            rfis: options.rfis,
            submittals: options.submittals,
            work_retry: options.work_retry.unwrap_or(FAST_WORK_RETRY),
            mail: notification::MailSettings {
                smtp_url: options.smtp_url.clone(),
                dir: env.dir.join("mail"),
                from: "Connectability <no-reply@connectability.test>".into(),
                base_url: "https://connectability.test".into(),
                max_backoff: Duration::from_millis(200),
                retention: Default::default(),
            },
        };
        let mut dbs = Vec::new();
        for service in services {
            let entry = service.entry();
            let db = env.migrated_db(entry.name, &(entry.migrations)()).await;
            (entry.start)(db.clone(), &process)
                .await
                .unwrap_or_else(|e| panic!("{}: {e:#}", entry.name))
                .mount_on(&mut server, MAX_MESSAGE_BYTES);
            dbs.push((*service, db));
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(server.serve(
            listener,
            connectability_platform::server::wait_for(stopped),
            grace,
        ));
        let channel = lazy_channel(addr);
        TestApp {
            addr,
            env,
            issuer,
            process,
            dbs,
            metrics,
            clock,
            channel,
            stop,
            server,
        }
    }

    /// How many files the app's local store holds under `company/project` (a local folder
    /// keeps the emptied `copies/<connection>/` folders, so those are not counted).
    pub fn stored_files(&self, company: &str, project: &str) -> usize {
        fn files_under(dir: &std::path::Path) -> usize {
            std::fs::read_dir(dir).map_or(0, |d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
                    .sum()
            })
        }
        files_under(&self.env.dir.join("blobs").join(company).join(project))
    }

    pub fn db(&self, service: Service) -> &Db {
        &self
            .dbs
            .iter()
            .find(|(s, _)| *s == service)
            .expect("service is running")
            .1
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A channel that sends `token` on every call.
    pub fn authed(&self, token: &str) -> AuthedChannel {
        InterceptedService::new(self.channel.clone(), BearerToken::new(token))
    }

    /// A connection-manager client with `service`'s identity (what a sync core confirms
    /// connection events with).
    pub fn connections_gateway(
        &self,
        service: &str,
    ) -> connectability_platform::connections::ConnectionsGateway {
        connectability_platform::connections::ConnectionsGateway::new(
            self.channel(),
            self.issuer.service(service),
        )
    }

    pub fn operator_token(&self) -> String {
        self.issuer.operator()
    }

    pub fn user_token(&self, user_id: &str) -> String {
        self.issuer.user(user_id)
    }

    pub fn directory(&self, token: &str) -> DirectoryServiceClient<AuthedChannel> {
        DirectoryServiceClient::new(self.authed(token))
    }

    pub fn directory_as_operator(&self) -> DirectoryServiceClient<AuthedChannel> {
        self.directory(&self.operator_token())
    }

    pub fn connections(&self, token: &str) -> ConnectionServiceClient<AuthedChannel> {
        ConnectionServiceClient::new(self.authed(token))
    }

    pub fn drawings(&self, token: &str) -> DrawingServiceClient<AuthedChannel> {
        DrawingServiceClient::new(self.authed(token))
    }

    pub fn rfis(&self, token: &str) -> RfiServiceClient<AuthedChannel> {
        RfiServiceClient::new(self.authed(token)).max_decoding_message_size(usize::MAX)
    }

    pub fn submittals(&self, token: &str) -> SubmittalServiceClient<AuthedChannel> {
        SubmittalServiceClient::new(self.authed(token)).max_decoding_message_size(usize::MAX)
    }

    pub fn notifications(&self, token: &str) -> NotificationServiceClient<AuthedChannel> {
        NotificationServiceClient::new(self.authed(token))
    }

    /// A second connection-manager server (another replica) on the same database and bus.
    pub async fn connection_manager_replica(&self) -> Replica {
        self.replica(Service::ConnectionManager).await
    }

    /// A second drawings-sync (API, relay, consumers, backfill worker) on the app's database
    /// and event bus, as a second pod would run.
    pub async fn drawings_replica(&self) -> Replica {
        self.replica(Service::DrawingsSync).await
    }

    /// Another server running `service` on the app's database and bus, as a second pod
    /// would.
    pub async fn replica(&self, service: Service) -> Replica {
        let mut server = Self::replica_server();
        (service.entry().start)(self.db(service).clone(), &self.process)
            .await
            .unwrap_or_else(|e| panic!("{} replica: {e:#}", service.name()))
            .mount_on(&mut server, MAX_MESSAGE_BYTES);
        Self::serve_replica(server).await
    }

    fn replica_server() -> GrpcServer {
        let verifier = connectability_auth::Verifier::hs256(DEV_ONLY_HS256_SECRET.as_bytes());
        GrpcServer::new(verifier, Metrics::new())
    }

    async fn serve_replica(server: GrpcServer) -> Replica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(server.serve(
            listener,
            connectability_platform::server::wait_for(stopped),
            Duration::ZERO,
        ));
        Replica {
            channel: lazy_channel(addr),
            stop,
            server,
        }
    }

    /// Graceful stop: health NOT_SERVING, in-flight calls drain, relays stop.
    pub async fn stop(self) {
        self.begin_stop();
        if let Err(e) = self.wait_stopped().await {
            panic!("server failed: {e:#}");
        }
    }

    /// Sends the shutdown signal (as SIGTERM would) without waiting.
    pub fn begin_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the server has stopped; returns its result.
    pub async fn wait_stopped(self) -> anyhow::Result<()> {
        self.server.await?
    }
}

const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

fn lazy_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// Another server instance of a service, sharing the app's storage.
pub struct Replica {
    channel: Channel,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    pub fn connections(&self, token: &str) -> ConnectionServiceClient<AuthedChannel> {
        ConnectionServiceClient::new(InterceptedService::new(
            self.channel.clone(),
            BearerToken::new(token),
        ))
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }
}

/// Polls `probe` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped() {
        assert_eq!(
            replace_db_name("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            replace_db_name("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }

    #[test]
    fn prefixes_carry_their_age() {
        assert!(prefix_age_secs(&format!("ct{}xabc_directory", unix_secs() - 10)).unwrap() >= 10);
        assert!(prefix_age_secs("postgres").is_none());
        assert!(prefix_age_secs("CT1XABC_DIRECTORY").is_some());
    }
}
