//! `/metrics` after a sync, scraped over HTTP as Prometheus would: the operator's metrics
//! carry the right numbers, every metric the Grafana dashboard and the alert rules in
//! deploy/observability/ query is exported, and every exported one is documented in
//! docs/observability.md.

use std::{collections::BTreeSet, path::Path, time::Duration};

use connectability_proto::drawings::v1 as dpb;
use connectability_testkit::{Backend, Service, TestApp, eventually};
use connectability_tests::fanout::Fanout;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_backends!(after_a_sync_metrics_answer_the_dashboard_and_alerts);

/// `GET /metrics` over plain HTTP/1.1.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The value of one sample, e.g. `connectability_copies_total{tool="drawings"}`.
fn value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Metric families in an exposition (from its `# TYPE` lines).
fn families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .map(String::from)
        .collect()
}

/// The metric names a PromQL text uses (ours and the gRPC ones), histogram suffixes removed.
fn queried(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("connectability_") || word.starts_with("grpc_server_") {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(word);
            names.insert(family.to_string());
        }
    }
    names
}

async fn after_a_sync_metrics_answer_the_dashboard_and_alerts(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[
            Service::Directory,
            Service::ConnectionManager,
            Service::DrawingsSync,
            Service::Notification,
        ],
    )
    .await;
    let mut world = Fanout::build(app, 2, 64).await.unwrap();
    let ids = world.revisions(3).await.unwrap();
    world.publish(ids).await.unwrap();
    let raj = world.app.drawings(&world.app.user_token(&world.raj));
    for (_, connection) in world.downstreams.clone() {
        eventually(
            "three copies in each downstream",
            Duration::from_secs(30),
            || {
                let mut raj = raj.clone();
                let connection = connection.clone();
                async move {
                    let s = raj
                        .get_sync_status(dpb::GetSyncStatusRequest {
                            connection_id: connection,
                        })
                        .await
                        .ok()?
                        .into_inner();
                    (s.items_copied == 3).then_some(())
                }
            },
        )
        .await;
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = world.app.metrics.clone().serve_on(listener);
    // The outbox drains once the relay has published the copies' events.
    let metrics = eventually("the outbox drained", Duration::from_secs(30), || async {
        let m = scrape(addr).await;
        (value(
            &m,
            r#"connectability_outbox_pending{service="drawings-sync"}"#,
        ) == Some(0.0))
        .then_some(m)
    })
    .await;

    // The numbers of this sync.
    assert_eq!(
        value(&metrics, r#"connectability_copies_total{tool="drawings"}"#),
        Some(6.0),
        "3 revisions to each of 2 downstreams"
    );
    for (_, connection) in &world.downstreams {
        let series = |name: &str| format!(r#"{name}{{connection="{connection}",tool="drawings"}}"#);
        assert_eq!(
            value(&metrics, &series("connectability_sync_items_copied")),
            Some(3.0)
        );
        assert_eq!(
            value(&metrics, &series("connectability_sync_items_total")),
            Some(3.0)
        );
        assert_eq!(
            value(&metrics, &series("connectability_sync_lag_seconds")),
            Some(0.0)
        );
    }
    assert_eq!(
        value(
            &metrics,
            r#"connectability_sync_connections{state="in_sync",tool="drawings"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &metrics,
            r#"connectability_dead_letters{service="notification"}"#
        ),
        Some(0.0)
    );
    assert!(
        value(
            &metrics,
            r#"grpc_server_handled_total{grpc_code="Ok",grpc_method="/connectability.drawings.v1.DrawingService/PublishDrawingRevisions"}"#
        ) == Some(1.0),
        "the publish call is counted"
    );

    // Everything the dashboard and the alerts ask for is exported.
    let exported = families(&metrics);
    let observability = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/observability");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(observability.join("dashboard.json")).unwrap(),
    )
    .expect("dashboard.json parses");
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push_str(target["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    let alerts = std::fs::read_to_string(observability.join("alerts.yaml")).unwrap();
    for (file, text) in [("dashboard.json", exprs), ("alerts.yaml", alerts)] {
        let names = queried(&text);
        assert!(!names.is_empty(), "{file} queries no metrics");
        let missing: Vec<&String> = names.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} queries metrics /metrics does not export: {missing:?}"
        );
    }
    // Every metric of ours is documented.
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/observability.md"),
    )
    .unwrap();
    let undocumented: Vec<&String> = exported
        .iter()
        .filter(|m| m.starts_with("connectability_") || m.starts_with("grpc_server_"))
        .filter(|m| !doc.contains(&format!("`{m}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/observability.md: {undocumented:?}"
    );
}

/// The metrics layer runs before routing and authentication: paths that name no routed
/// method share one `unknown` label, so a client sending 10,000 random paths adds no series.
#[tokio::test]
async fn unknown_paths_add_no_metric_series() {
    use tonic::codegen::Service as _;
    let app = TestApp::spawn(Backend::Embedded, &[Service::Directory]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = app.metrics.clone().serve_on(listener);
    let series = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("grpc_server_handled_total{"))
            .count()
    };
    let before = series(&scrape(addr).await);

    let mut channel = app.channel();
    for i in 0..10_000u32 {
        let path = format!("/random.Service{}/Method{i}", i % 97);
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::empty())
            .unwrap();
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .unwrap();
        let response = channel.call(request).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let after = scrape(addr).await;
    assert!(
        after.contains(
            r#"grpc_server_handled_total{grpc_code="Unimplemented",grpc_method="unknown"} 10000"#
        ),
        "{}",
        after
            .lines()
            .filter(|l| l.starts_with("grpc_server_handled"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        series(&after) <= before + 1,
        "10,000 unknown paths added {} series",
        series(&after) - before
    );
    // A routed method keeps its own label.
    assert_eq!(
        connectability_platform::metrics::method_label("/grpc.health.v1.Health/Check"),
        "/grpc.health.v1.Health/Check"
    );
    app.stop().await;
}
