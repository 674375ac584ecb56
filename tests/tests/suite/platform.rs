//! What every server does: health, graceful shutdown, metrics, demo data of `dev`.

use std::time::Duration;

use connectability_proto::directory::v1 as pb;
use connectability_testkit::{Backend, Service, TestApp, eventually};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const DIRECTORY: &str = "connectability.directory.v1.DirectoryService";

async fn status(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> Option<ServingStatus> {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status())
}

async fn shutdown_reports_not_serving_before_closing(backend: Backend) {
    let app =
        TestApp::spawn_with_grace(backend, &[Service::Directory], Duration::from_secs(2)).await;
    let mut health = HealthClient::new(app.channel());
    assert_eq!(
        status(&mut health, DIRECTORY).await,
        Some(ServingStatus::Serving)
    );
    assert_eq!(status(&mut health, "").await, Some(ServingStatus::Serving));
    app.begin_stop();
    eventually(
        "NOT_SERVING during the grace period",
        Duration::from_secs(2),
        || {
            let mut health = health.clone();
            async move {
                (status(&mut health, DIRECTORY).await == Some(ServingStatus::NotServing))
                    .then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        status(&mut health, "").await,
        Some(ServingStatus::NotServing)
    );
    // Calls still succeed while draining.
    assert!(
        app.directory_as_operator()
            .list_companies(pb::ListCompaniesRequest::default())
            .await
            .is_ok()
    );
    let channel = app.channel();
    app.wait_stopped().await.unwrap();
    let mut after = HealthClient::new(channel);
    assert_eq!(status(&mut after, DIRECTORY).await, None, "server is gone");
}

async fn calls_are_counted_by_method_and_code(backend: Backend) {
    let app = TestApp::spawn(backend, &[Service::Directory]).await;
    let err = app
        .directory_as_operator()
        .get_project(pb::GetProjectRequest {
            id: "prj_missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let text = app.metrics.render();
    assert!(
        text.contains(r#"grpc_server_handled_total{grpc_code="NotFound",grpc_method="/connectability.directory.v1.DirectoryService/GetProject"} 1"#),
        "{text}"
    );
    app.stop().await;
}

async fn demo_data_loads_once_and_shows_each_user_their_projects(backend: Backend) {
    let app = TestApp::spawn(backend, &[Service::Directory]).await;
    let db = app.db(Service::Directory);
    assert!(directory::demo::load(db).await.unwrap());
    assert!(
        !directory::demo::load(db).await.unwrap(),
        "second start keeps the data"
    );
    let mut raj = app.directory(&app.user_token("usr_raj"));
    let mut ids: Vec<String> = raj
        .list_projects(pb::ListProjectsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .projects
        .into_iter()
        .map(|p| p.id)
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "prj_harbor_electrical",
            "prj_harbor_tower",
            "prj_keystone_electrical",
            "prj_keystone_hq"
        ]
    );
    let mut op = app.directory_as_operator();
    let companies = op
        .list_companies(pb::ListCompaniesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .companies;
    assert_eq!(companies.len(), 5);
    assert!(companies.iter().any(|c| c.govcloud));
    assert!(companies.iter().any(|c| c.storage_location != "us-east"));
    let projects = op
        .list_projects(pb::ListProjectsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .projects;
    assert!(projects.iter().any(|p| !p.active), "an inactive project");
    app.stop().await;
}

on_both_backends!(
    shutdown_reports_not_serving_before_closing,
    calls_are_counted_by_method_and_code,
    demo_data_loads_once_and_shows_each_user_their_projects,
);

/// Issue 16: no SQL statement runs unbounded on Postgres, whatever a tenant's data makes it
/// do: every pooled session carries the store's `statement_timeout`.
#[tokio::test]
async fn postgres_sessions_carry_a_statement_timeout() {
    let Some(Backend::Production { database_url, .. }) = Backend::production().await else {
        return;
    };
    let db = connectability_store::Db::connect(&database_url)
        .await
        .unwrap();
    for _ in 0..3 {
        let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(timeout, "1min");
    }
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 16: gRPC between services over TLS. A server with GRPC_TLS_* serves TLS only on its
/// gRPC address; an `https://` peer URL is verified against GRPC_TLS_CA_FILE; the kubelet's
/// plaintext gRPC probe gets health, and only health, on HEALTH_ADDR.
#[tokio::test]
async fn grpc_over_tls_between_services_with_plaintext_health_for_probes() {
    use connectability_platform::{GrpcServer, metrics::Metrics, tls};
    let dir = std::env::temp_dir().join(format!("tls-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=test-ca",
            "-days",
            "1",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "svc.key",
            "-out",
            "svc.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "svc.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "svc.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    let server_tls = tls::load(
        Some(&dir.join("svc.crt")),
        Some(&dir.join("svc.key")),
        Some(&dir.join("ca.crt")),
    )
    .unwrap();
    assert!(server_tls.is_some());
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = grpc.local_addr().unwrap().port();
    let health_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = GrpcServer::new(
        connectability_auth::Verifier::hs256(b"tls-test"),
        Metrics::new(),
    );
    server.set_tls(
        server_tls,
        Some(format!("127.0.0.1:{health_port}").parse().unwrap()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(
        grpc,
        async {
            let _ = stopped.await;
        },
        Duration::ZERO,
    ));
    let check = |channel: tonic::transport::Channel| async move {
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status())
    };
    // A peer over TLS, verified against the CA, by the name in the URL.
    let over_tls =
        connectability_platform::directory::channel(&format!("https://localhost:{port}")).unwrap();
    let answer = eventually("TLS health", Duration::from_secs(10), || {
        let c = over_tls.clone();
        async move { check(c).await.ok() }
    })
    .await;
    assert_eq!(answer, ServingStatus::Serving);
    // Plaintext to the gRPC port gets nothing.
    let plain =
        connectability_platform::directory::channel(&format!("http://127.0.0.1:{port}")).unwrap();
    assert!(check(plain).await.is_err(), "plaintext on the TLS port");
    // The probe's plaintext listener answers health...
    let probe =
        connectability_platform::directory::channel(&format!("http://127.0.0.1:{health_port}"))
            .unwrap();
    assert_eq!(check(probe.clone()).await.unwrap(), ServingStatus::Serving);
    // ...and nothing else.
    let unrouted = directory_call_code(probe).await;
    assert_eq!(unrouted, tonic::Code::Unimplemented);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir).ok();
}

/// A call to a service the health listener does not route (the directory's).
async fn directory_call_code(channel: tonic::transport::Channel) -> tonic::Code {
    use connectability_proto::directory::v1::{
        GetCompanyRequest, directory_service_client::DirectoryServiceClient,
    };
    DirectoryServiceClient::new(channel)
        .get_company(GetCompanyRequest { id: "co_x".into() })
        .await
        .err()
        .map(|s| s.code())
        .unwrap_or(tonic::Code::Ok)
}

/// Issue 16: a call another service refuses for this service's identity (an expired or
/// foreign token) is not "the peer is down": it is counted, and an event that needed it is
/// not retried forever as a dependency failure but follows its attempts to a dead letter.
/// An unreachable peer still is a dependency failure.
#[tokio::test]
async fn a_refused_service_identity_is_not_a_transient_failure() {
    use connectability_platform::{
        directory::{DirectoryGateway, channel},
        service_identity::AUTH_FAILURES,
    };
    use connectability_store::inbox::is_dependency_failure;
    let app = TestApp::spawn(Backend::Embedded, &[Service::Directory]).await;
    let before = AUTH_FAILURES.with_label_values(&["directory"]).get();
    let refused = DirectoryGateway::new(app.channel(), "not-a-valid-token", Duration::ZERO)
        .project_access("prj_x", "usr_x")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Internal, "{refused:?}");
    assert!(!is_dependency_failure(&anyhow::Error::new(refused)));
    assert_eq!(
        AUTH_FAILURES.with_label_values(&["directory"]).get(),
        before + 1
    );
    let unreachable = DirectoryGateway::new(
        channel("http://127.0.0.1:1").unwrap(),
        app.issuer.service("rfi-sync"),
        Duration::ZERO,
    )
    .project_access("prj_x", "usr_x")
    .await
    .unwrap_err();
    assert_eq!(unreachable.code(), tonic::Code::Unavailable);
    assert!(is_dependency_failure(&anyhow::Error::new(unreachable)));
    app.stop().await;
}

/// Issue 16: the directory's service-only answers go to the services that call it, not to
/// any service identity (nor to itself).
#[tokio::test]
async fn the_directory_answers_only_the_services_that_call_it() {
    let app = TestApp::spawn(Backend::Embedded, &[Service::Directory]).await;
    for (service, allowed) in [
        ("connection-manager", true),
        ("notification", true),
        ("directory", false),
        ("billing", false),
    ] {
        let got = app
            .directory(&app.issuer.service(service))
            .get_project_access(pb::GetProjectAccessRequest {
                project_id: "prj_unknown".into(),
                user_id: "usr_unknown".into(),
            })
            .await;
        let code = got.err().map(|s| s.code()).unwrap_or(tonic::Code::Ok);
        assert_eq!(
            code == tonic::Code::PermissionDenied,
            !allowed,
            "{service}: {code:?}"
        );
    }
    app.stop().await;
}

/// Issue 16: one client connection cannot hold the server's every task: the server
/// advertises at most `MAX_CONCURRENT_STREAMS` concurrent calls per HTTP/2 connection (the
/// client must queue the rest), and handles at most `MAX_CONCURRENT_CALLS_PER_CONNECTION`.
#[tokio::test]
async fn servers_bound_the_calls_of_one_client_connection() {
    use connectability_platform::server::MAX_CONCURRENT_STREAMS;
    let app = TestApp::spawn(Backend::Embedded, &[Service::Directory]).await;
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let client = client.ready().await.unwrap();
    let advertised = eventually("the server's SETTINGS", Duration::from_secs(10), || {
        let n = client.current_max_send_streams();
        async move { (n == MAX_CONCURRENT_STREAMS as usize).then_some(n) }
    })
    .await;
    assert_eq!(advertised, 128);
    drop(client);
    app.stop().await;
}
