//! One test binary (fewer links on small machines) with every suite. Each test runs on
//! both backends: `sqlite_inproc::…` always, `postgres_nats::…` when Postgres and NATS
//! answer (and under `CI=true` it must).

/// Generates `sqlite_inproc::<test>` and `postgres_nats::<test>` for each named
/// `async fn <test>(backend: Backend)` of the enclosing module.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite_inproc {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(connectability_testkit::Backend::Embedded).await
                }
            )+
        }
        mod postgres_nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = connectability_testkit::Backend::production().await {
                        super::$name(backend).await
                    }
                }
            )+
        }
    };
}

mod authz;
mod bus_trust;
mod cli;
mod conformance;
mod connections;
mod delivery;
mod directory;
mod drawings;
mod hostile;
mod limits;
mod metrics;
mod notifications;
mod object_store;
mod platform;
mod rfis;
mod submittals;
mod sync_engine;
mod synced_tools;
mod traces;
