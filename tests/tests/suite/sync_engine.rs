//! The sync engine (libs/sync) across many connections at once: one change queues one work
//! item per connection, and a copy worker takes the items of one change together, reconciles
//! them in one transaction and counts each connection once.

use std::time::Duration;

use connectability_proto::{
    connections::v1::{self as cpb, Feature},
    directory::v1::{self as pb, PermissionLevel as L},
    drawings::v1::{self as dpb, upload_file_request::Part},
};
use connectability_testkit::{Backend, Service, TestApp, eventually};

on_both_backends!(one_change_to_many_connections_is_copied_once_to_each);

fn admin() -> pb::ToolPermissions {
    pb::ToolPermissions {
        connection_manager: L::Admin as i32,
        drawings: L::Admin as i32,
        rfis: L::Admin as i32,
        submittals: L::Admin as i32,
    }
}

fn revision(
    project: &str,
    area: &str,
    set: &str,
    file: &str,
    i: usize,
    rev: &str,
) -> dpb::CreateDrawingRevisionRequest {
    dpb::CreateDrawingRevisionRequest {
        project_id: project.into(),
        area_id: area.into(),
        set_id: set.into(),
        number: format!("E-{i:03}"),
        title: format!("Panel schedule {i}"),
        discipline_name: "Electrical".into(),
        discipline_position: 1,
        revision_number: rev.into(),
        revision_status: "Issued".into(),
        drawing_date: "2026-02-14".into(),
        received_date: "2026-02-20".into(),
        file_id: file.into(),
        custom_fields: Default::default(),
    }
}

/// Six downstreams of one upstream, one of them disconnected; two publishes (three new
/// sheets, then a new revision of one). Every connected downstream gets each revision exactly
/// once with its origin, the disconnected one gets nothing new, each connection's counters
/// count its own copies, and the work queue drains.
async fn one_change_to_many_connections_is_copied_once_to_each(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[
            Service::Directory,
            Service::DrawingsSync,
            Service::ConnectionManager,
        ],
    )
    .await;
    let mut op = app.directory_as_operator();
    let company = |name: &str| pb::CreateCompanyRequest {
        name: name.into(),
        storage_location: "us-east".into(),
        ..Default::default()
    };
    let gc = op
        .create_company(company("GC"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let sub = op
        .create_company(company("Sub"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let user = |company: &str, name: &str| pb::CreateUserRequest {
        company_id: company.into(),
        display_name: name.into(),
        email: format!("{name}@{company}.example"),
        ..Default::default()
    };
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
    let project = |company: &str, name: String| pb::CreateProjectRequest {
        company_id: company.into(),
        name,
        ..Default::default()
    };
    let member = |project: &str, user: &str| pb::AddProjectMemberRequest {
        project_id: project.into(),
        user_id: user.into(),
        permissions: Some(admin()),
        ..Default::default()
    };
    let up = op
        .create_project(project(&gc, "Tower".into()))
        .await
        .unwrap()
        .into_inner()
        .id;
    op.add_project_member(member(&up, &gina)).await.unwrap();
    op.add_project_member(member(&up, &raj)).await.unwrap();
    let mut connections = app.connections(&app.user_token(&raj));
    let mut downstreams = Vec::new();
    for i in 0..6 {
        let down = op
            .create_project(project(&sub, format!("Tower - trade {i}")))
            .await
            .unwrap()
            .into_inner()
            .id;
        op.add_project_member(member(&down, &raj)).await.unwrap();
        let c = connections
            .request_connection(cpb::RequestConnectionRequest {
                downstream_project_id: down.clone(),
                upstream_project_id: up.clone(),
                features: vec![Feature::Drawings as i32],
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        downstreams.push((down, c.id));
    }
    let raj_drawings = app.drawings(&app.user_token(&raj));
    let status = |id: String| {
        let mut client = raj_drawings.clone();
        async move {
            client
                .get_sync_status(dpb::GetSyncStatusRequest { connection_id: id })
                .await
                .ok()
                .map(|s| s.into_inner())
        }
    };
    for (_, id) in &downstreams {
        eventually(
            "every connection in sync",
            Duration::from_secs(30),
            || async {
                status(id.clone())
                    .await
                    .filter(|s| s.state == dpb::SyncState::InSync as i32)
            },
        )
        .await;
    }
    let (stopped_down, stopped) = downstreams.pop().unwrap();
    connections
        .disconnect_connection(cpb::DisconnectConnectionRequest {
            id: stopped.clone(),
            reason: "trade finished".into(),
        })
        .await
        .unwrap();
    eventually(
        "the disconnection reaches drawings-sync",
        Duration::from_secs(30),
        || async {
            status(stopped.clone())
                .await
                .filter(|s| s.state == dpb::SyncState::Stopped as i32)
        },
    )
    .await;

    let mut drawings = app.drawings(&app.user_token(&gina));
    let area = drawings
        .create_drawing_area(dpb::CreateDrawingAreaRequest {
            project_id: up.clone(),
            name: "Level 1".into(),
            description: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let set = drawings
        .create_drawing_set(dpb::CreateDrawingSetRequest {
            project_id: up.clone(),
            name: "IFC".into(),
            date: "2026-03-01".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let file = drawings
        .upload_file(tokio_stream::iter(vec![
            dpb::UploadFileRequest {
                part: Some(Part::Header(dpb::upload_file_request::Header {
                    project_id: up.clone(),
                    filename: "sheet.pdf".into(),
                    content_type: "application/pdf".into(),
                })),
            },
            dpb::UploadFileRequest {
                part: Some(Part::Chunk(b"%PDF-1.4\n%sheet\n".to_vec())),
            },
        ]))
        .await
        .unwrap()
        .into_inner()
        .id;
    let publisher = drawings.clone();
    let publish = |ids: Vec<String>| {
        let mut drawings = publisher.clone();
        let up = up.clone();
        async move {
            drawings
                .publish_drawing_revisions(dpb::PublishDrawingRevisionsRequest {
                    project_id: up,
                    revision_ids: ids,
                })
                .await
                .unwrap();
        }
    };
    let mut first = Vec::new();
    for i in 0..3 {
        let r = drawings
            .create_drawing_revision(revision(&up, &area, &set, &file, i, "0"))
            .await
            .unwrap()
            .into_inner();
        first.push(r);
    }
    publish(first.iter().map(|r| r.id.clone()).collect()).await;
    let second = drawings
        .create_drawing_revision(revision(&up, &area, &set, &file, 0, "1"))
        .await
        .unwrap()
        .into_inner();
    publish(vec![second.id.clone()]).await;

    let list = |project: String| {
        let mut client = raj_drawings.clone();
        async move {
            client
                .list_drawings(dpb::ListDrawingsRequest {
                    project_id: project,
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .drawings
        }
    };
    for (down, id) in &downstreams {
        let s = eventually("four revisions copied", Duration::from_secs(30), || async {
            status(id.clone()).await.filter(|s| s.items_copied >= 4)
        })
        .await;
        assert_eq!(
            (s.items_copied, s.items_total),
            (4, 4),
            "counted once each: {s:?}"
        );
        let copies = list(down.clone()).await;
        assert_eq!(copies.len(), 3, "one copy per upstream drawing in {down}");
        let mut origins: Vec<String> = copies
            .iter()
            .map(|d| d.origin.clone().unwrap_or_default().upstream_id)
            .collect();
        origins.sort();
        let mut expected: Vec<String> = first.iter().map(|r| r.drawing_id.clone()).collect();
        expected.sort();
        assert_eq!(origins, expected);
        let sheet0 = copies.iter().find(|d| d.number == "E-000").unwrap();
        let revisions = raj_drawings
            .clone()
            .list_drawing_revisions(dpb::ListDrawingRevisionsRequest {
                drawing_id: sheet0.id.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .revisions;
        let mut numbers: Vec<&str> = revisions
            .iter()
            .map(|r| r.revision_number.as_str())
            .collect();
        numbers.sort();
        assert_eq!(numbers, ["0", "1"], "each revision once in {down}");
        assert!(
            revisions
                .iter()
                .all(|r| r.project_id == *down && r.file_id != file)
        );
    }
    assert!(
        list(stopped_down).await.is_empty(),
        "a disconnected downstream gets no new copies"
    );
    let db = app.db(Service::DrawingsSync).clone();
    eventually("the work queue drains", Duration::from_secs(30), || async {
        let n = connectability_sync::db::work_count(&mut *db.pool().acquire().await.unwrap())
            .await
            .unwrap();
        (n == 0).then_some(())
    })
    .await;
    app.stop().await;
}
