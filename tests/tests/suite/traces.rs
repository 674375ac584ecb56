//! One trace across the system: a publish in drawings-sync, the copy it causes (through
//! NATS and the sync work queue), the notification the copy raises (through NATS again),
//! the directory lookups the notification makes (gRPC) and the email it sends are spans of
//! one trace, exported by each service's own process to an in-process OTLP receiver.
//!
//! Production backend only: in-process events never cross a process boundary, and only
//! separate processes show that the context really travels in NATS headers and outboxes.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use connectability_auth::{BearerToken, Issuer};
use connectability_proto::drawings::v1::{
    self as dpb, drawing_service_client::DrawingServiceClient,
};
use connectability_store::Db;
use connectability_testkit::{Backend, TestEnv};
use connectability_tests::{
    chaos::infra::{Process, wait_port},
    connectability_bin,
    fanout::{Services, World},
    otlp::{Received, Receiver},
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

fn authed(port: u16, token: &str) -> InterceptedService<Channel, BearerToken> {
    InterceptedService::new(loopback(port), BearerToken::new(token))
}

/// The services as processes, each on its own port.
struct Ports {
    issuer: Issuer,
    directory: u16,
    drawings: u16,
    connections: u16,
}

fn loopback(port: u16) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("loopback URL")
        .connect_lazy()
}

impl Services for Ports {
    fn issuer(&self) -> &Issuer {
        &self.issuer
    }
    fn directory_channel(&self) -> Channel {
        loopback(self.directory)
    }
    fn drawings_channel(&self) -> Channel {
        loopback(self.drawings)
    }
    fn connections_channel(&self) -> Channel {
        loopback(self.connections)
    }
}

async fn poll<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `span` descends from `ancestor` through the parent links of `spans`.
fn descends(span: &Received, ancestor: &Received, spans: &HashMap<String, &Received>) -> bool {
    let mut at = span;
    for _ in 0..64 {
        if at.parent_id() == ancestor.span_id() {
            return true;
        }
        match spans.get(&at.parent_id()) {
            Some(parent) => at = parent,
            None => return false,
        }
    }
    false
}

async fn a_publish_its_copies_and_their_email_are_one_trace(backend: Backend) {
    let env = TestEnv::new(backend.clone()).await;
    let Backend::Production { nats_url, .. } = &backend else {
        unreachable!("production only")
    };
    let otlp = Receiver::start().await.expect("OTLP receiver");
    let secret = format!("trace-{}", env.prefix);
    let bin = connectability_bin();

    let services = [
        ("directory", "directory"),
        ("drawings-sync", "drawings"),
        ("connection-manager", "connections"),
        ("notification", "notifications"),
    ];
    let mut procs = Vec::new();
    for (service, _) in services {
        procs.push(Process::new(&env.dir, service, 0, Vec::new()).expect("a free port"));
    }
    let port = |service: &str| procs.iter().find(|p| p.service == service).unwrap().port;
    let (directory, drawings, connections) = (
        port("directory"),
        port("drawings-sync"),
        port("connection-manager"),
    );
    let mut dbs = HashMap::new();
    for (p, (_, db)) in procs.iter_mut().zip(services) {
        let url = env.fresh_db_url(db).await;
        dbs.insert(p.service, url.clone());
        p.set_env(
            [
                ("DATABASE_URL", url),
                ("EVENTS_URL", nats_url.clone()),
                ("EVENTS_PREFIX", env.prefix.clone()),
                ("AUTH_HS256_SECRET", secret.clone()),
                ("AUTH_ALLOW_HS256", "true".into()),
                ("METRICS_ADDR", "off".into()),
                ("SHUTDOWN_GRACE_SECS", "0".into()),
                ("DIRECTORY_URL", format!("http://127.0.0.1:{directory}")),
                ("DRAWINGS_URL", format!("http://127.0.0.1:{drawings}")),
                ("CONNECTIONS_URL", format!("http://127.0.0.1:{connections}")),
                (
                    "BLOBS_URL",
                    format!("file://{}", env.dir.join("blobs").display()),
                ),
                ("MAIL_DIR", env.dir.join("mail").display().to_string()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.clone()),
                // Export every 100 ms rather than every 5 s.
                ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
                ("RUST_LOG", "info".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        );
        p.spawn(&bin, &[]).expect("service process");
    }
    for p in &procs {
        wait_port(p.port, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{}: {e}; log {}", p.label, p.log().display()));
    }

    // The world, built as a client would: a GC project connected to a subcontractor's; then
    // the GC publishes one sheet.
    let ports = Ports {
        issuer: Issuer::hs256(secret.as_bytes()),
        directory,
        drawings,
        connections,
    };
    let dwg_db = Db::connect(&dbs["drawings-sync"]).await.unwrap();
    let world = World::build(&ports, &dwg_db, 1, 64).await.unwrap();
    let mut dwg = DrawingServiceClient::new(authed(drawings, &ports.issuer.user(&world.gina)));
    let revision = dwg
        .create_drawing_revision(world.revision_request(101, "0"))
        .await
        .unwrap()
        .into_inner()
        .id;
    dwg.publish_drawing_revisions(dpb::PublishDrawingRevisionsRequest {
        project_id: world.up.clone(),
        revision_ids: vec![revision],
    })
    .await
    .unwrap();

    // The spans of the publish's trace, once the email it leads to was sent and every
    // process (each exporting on its own schedule) has reported its part: drawings-sync's
    // event handling and copy, the directory's calls.
    let publish_name = "connectability.drawings.v1.DrawingService/PublishDrawingRevisions";
    let (publish, trace) = poll("the publish's trace through to the email", async || {
        let spans = otlp.spans();
        let publish = spans
            .iter()
            .find(|s| s.service == "drawings-sync" && s.name() == publish_name)?
            .clone();
        let trace: Vec<Received> = spans
            .into_iter()
            .filter(|s| s.trace_id() == publish.trace_id())
            .collect();
        let emailed = trace
            .iter()
            .any(|s| s.service == "notification" && s.name() == "send email");
        let by_id: HashMap<String, &Received> = trace.iter().map(|s| (s.span_id(), s)).collect();
        let handled_copy = trace
            .iter()
            .find(|s| s.service == "notification" && s.name() == "handle DrawingsCopied");
        let looked_up = handled_copy.is_some_and(|h| {
            trace
                .iter()
                .any(|s| s.service == "directory" && descends(s, h, &by_id))
        });
        let copied = ["handle RevisionsPublished", "copy"].iter().all(|name| {
            trace
                .iter()
                .any(|s| s.service == "drawings-sync" && s.name() == *name)
        });
        (emailed && looked_up && copied).then_some((publish, trace))
    })
    .await;
    let by_id: HashMap<String, &Received> = trace.iter().map(|s| (s.span_id(), s)).collect();
    println!("trace {} ({} spans):", publish.trace_id(), trace.len());
    for s in &trace {
        println!(
            "  {:<18} {:<70} span {} parent {}",
            s.service,
            s.name(),
            s.span_id(),
            s.parent_id()
        );
    }
    let find = |service: &str, name: &str| -> &Received {
        trace
            .iter()
            .find(|s| s.service == service && s.name() == name)
            .unwrap_or_else(|| {
                let seen: Vec<String> = trace
                    .iter()
                    .map(|s| format!("{}: {}", s.service, s.name()))
                    .collect();
                panic!("no `{name}` span from {service} in the trace; it has {seen:?}")
            })
    };
    let handled_publish = find("drawings-sync", "handle RevisionsPublished");
    let copy = find("drawings-sync", "copy");
    let handled_copy = find("notification", "handle DrawingsCopied");
    let email = find("notification", "send email");

    // Parent links: gRPC → NATS → the copy worker → NATS → notification → email.
    assert_eq!(
        handled_publish.parent_id(),
        publish.span_id(),
        "publish event"
    );
    assert_eq!(copy.parent_id(), handled_publish.span_id(), "copy");
    assert_eq!(handled_copy.parent_id(), copy.span_id(), "notification");
    assert!(descends(email, handled_copy, &by_id), "email");
    // The notification's directory lookups are gRPC calls into the same trace.
    let lookups: Vec<&Received> = trace
        .iter()
        .filter(|s| {
            s.service == "directory"
                && s.name()
                    .starts_with("connectability.directory.v1.DirectoryService/")
                && descends(s, handled_copy, &by_id)
        })
        .collect();
    assert!(
        !lookups.is_empty(),
        "the notification's directory calls are not in its trace"
    );
    let services: std::collections::BTreeSet<&str> =
        trace.iter().map(|s| s.service.as_str()).collect();
    assert!(
        services.is_superset(&["directory", "drawings-sync", "notification"].into()),
        "{services:?}"
    );
}

mod postgres_nats {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_trace_from_publish_through_copies_to_email() {
        if let Some(backend) = connectability_testkit::Backend::production().await {
            super::a_publish_its_copies_and_their_email_are_one_trace(backend).await
        }
    }
}
