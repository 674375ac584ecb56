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
use connectability_proto::{
    connections::v1::{self as cpb, Feature, connection_service_client::ConnectionServiceClient},
    directory::v1::{self as pb, directory_service_client::DirectoryServiceClient},
    drawings::v1::{self as dpb, drawing_service_client::DrawingServiceClient},
};
use connectability_store::Db;
use connectability_testkit::{Backend, TestEnv};
use connectability_tests::{
    chaos::infra::{Process, wait_port},
    connectability_bin,
    fanout::admin,
    otlp::{Received, Receiver},
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

fn authed(port: u16, token: &str) -> InterceptedService<Channel, BearerToken> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("loopback URL")
        .connect_lazy();
    InterceptedService::new(channel, BearerToken::new(token))
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
                ("METRICS_ADDR", "off".into()),
                ("SHUTDOWN_GRACE_SECS", "0".into()),
                ("DIRECTORY_URL", format!("http://127.0.0.1:{directory}")),
                ("DRAWINGS_URL", format!("http://127.0.0.1:{drawings}")),
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

    // The world, built as a client would: a GC project connected to a subcontractor's.
    let issuer = Issuer::hs256(secret.as_bytes());
    let mut op = DirectoryServiceClient::new(authed(directory, &issuer.operator()));
    let company = |name: &str| pb::CreateCompanyRequest {
        name: name.into(),
        storage_location: "us-east".into(),
        ..Default::default()
    };
    let user = |company: &str, name: &str| pb::CreateUserRequest {
        company_id: company.into(),
        display_name: name.into(),
        email: format!("{name}@{company}.example"),
        ..Default::default()
    };
    let project = |company: &str, name: &str| pb::CreateProjectRequest {
        company_id: company.into(),
        name: name.into(),
        ..Default::default()
    };
    let member = |project: &str, user: &str| pb::AddProjectMemberRequest {
        project_id: project.into(),
        user_id: user.into(),
        permissions: Some(admin()),
        ..Default::default()
    };
    // The directory answers once its own startup (migrations) is done.
    let gc = poll("the directory", async || {
        op.create_company(company("GC"))
            .await
            .ok()
            .map(|c| c.into_inner().id)
    })
    .await;
    let sub = op
        .create_company(company("Sub"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let gina = op
        .create_user(user(&gc, "gina"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let raj = op
        .create_user(user(&sub, "raj"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let up = op
        .create_project(project(&gc, "Tower"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let down = op
        .create_project(project(&sub, "Tower - electrical"))
        .await
        .unwrap()
        .into_inner()
        .id;
    op.add_project_member(member(&up, &gina)).await.unwrap();
    op.add_project_member(member(&up, &raj)).await.unwrap();
    op.add_project_member(member(&down, &raj)).await.unwrap();

    let mut dwg = DrawingServiceClient::new(authed(drawings, &issuer.user(&gina)));
    let area = dwg
        .create_drawing_area(dpb::CreateDrawingAreaRequest {
            project_id: up.clone(),
            name: "Level 1".into(),
            description: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let set = dwg
        .create_drawing_set(dpb::CreateDrawingSetRequest {
            project_id: up.clone(),
            name: "IFC".into(),
            date: "2026-03-01".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    use dpb::upload_file_request::{Header, Part};
    let file = dwg
        .upload_file(tokio_stream::iter(vec![
            dpb::UploadFileRequest {
                part: Some(Part::Header(Header {
                    project_id: up.clone(),
                    filename: "a-101.pdf".into(),
                    content_type: "application/pdf".into(),
                })),
            },
            dpb::UploadFileRequest {
                part: Some(Part::Chunk(b"%PDF-1.4\nsheet".to_vec())),
            },
        ]))
        .await
        .unwrap()
        .into_inner()
        .id;
    let connection = ConnectionServiceClient::new(authed(connections, &issuer.user(&raj)))
        .request_connection(cpb::RequestConnectionRequest {
            downstream_project_id: down.clone(),
            upstream_project_id: up.clone(),
            features: vec![Feature::Drawings as i32],
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let dwg_db = Db::connect(&dbs["drawings-sync"]).await.unwrap();
    poll("the connection in sync", async || {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_connections WHERE state = 2")
            .fetch_one(dwg_db.pool())
            .await
            .ok()?;
        (n == 1).then_some(())
    })
    .await;

    let revision = dwg
        .create_drawing_revision(dpb::CreateDrawingRevisionRequest {
            project_id: up.clone(),
            area_id: area,
            set_id: set,
            number: "A-101".into(),
            title: "Ground floor".into(),
            discipline_name: "Architectural".into(),
            discipline_position: 1,
            revision_number: "0".into(),
            revision_status: "Issued".into(),
            drawing_date: "2026-02-14".into(),
            received_date: "2026-02-20".into(),
            file_id: file,
            custom_fields: Default::default(),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    dwg.publish_drawing_revisions(dpb::PublishDrawingRevisionsRequest {
        project_id: up.clone(),
        revision_ids: vec![revision],
    })
    .await
    .unwrap();

    // The spans of the publish's trace, once the email it leads to was sent.
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
        trace
            .iter()
            .any(|s| s.service == "notification" && s.name() == "send email")
            .then_some((publish, trace))
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
    let _ = connection;
}

mod postgres_nats {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_trace_from_publish_through_copies_to_email() {
        if let Some(backend) = connectability_testkit::Backend::production().await {
            super::a_publish_its_copies_and_their_email_are_one_trace(backend).await
        }
    }
}
