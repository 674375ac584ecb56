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
