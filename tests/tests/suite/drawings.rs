//! Drawings and their one-way sync, through gRPC across the directory, the connection
//! manager and drawings-sync (D1-D12, C17).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use connectability_events::{Envelope, RetryPolicy, SubscriptionSpec};
use connectability_platform::errors::{bad_field, reason};
use connectability_proto::{
    connections::v1::{self as cpb, Feature as F},
    directory::v1::{self as pb, PermissionLevel as L},
    drawings::v1::{self as dpb, upload_file_request::Part},
};
use connectability_store::{ServiceMigrations, Tx, inbox};
use connectability_testkit::{AuthedChannel, Backend, Options, Service, TestApp, eventually};
use tonic::{Code, Status};

type Directory = pb::directory_service_client::DirectoryServiceClient<AuthedChannel>;
type Drawings = dpb::drawing_service_client::DrawingServiceClient<AuthedChannel>;

const WAIT: Duration = Duration::from_secs(30);

fn perms(cm: L, drawings: L) -> pb::ToolPermissions {
    pb::ToolPermissions {
        connection_manager: cm as i32,
        drawings: drawings as i32,
        rfis: L::ReadOnly as i32,
        submittals: L::ReadOnly as i32,
    }
}

fn pdf(text: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% {text}\n%%EOF\n").into_bytes()
}

/// A GC project (upstream) and two subcontractor projects (downstream candidates).
struct World {
    app: TestApp,
    gc_admin: String,
    sub_admin: String,
    sub_standard: String,
    gc_project: String,
    sub_project: String,
    sub_project2: String,
}

async fn make(op: &mut Directory, company: &str, what: &str, admin: bool) -> (String, String) {
    let c = op
        .create_company(pb::CreateCompanyRequest {
            name: company.into(),
            storage_location: "us-east".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let u = op
        .create_user(pb::CreateUserRequest {
            company_id: c.id.clone(),
            display_name: what.into(),
            email: format!("{what}@{}.example", c.id),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    if admin {
        op.set_company_admin(pb::SetCompanyAdminRequest {
            company_id: c.id.clone(),
            user_id: u.id.clone(),
            admin: true,
        })
        .await
        .unwrap();
    }
    (c.id, u.id)
}

async fn project(op: &mut Directory, company: &str, name: &str) -> String {
    op.create_project(pb::CreateProjectRequest {
        company_id: company.into(),
        name: name.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .id
}

async fn member(op: &mut Directory, project: &str, user: &str, p: pb::ToolPermissions) {
    op.add_project_member(pb::AddProjectMemberRequest {
        project_id: project.into(),
        user_id: user.into(),
        permissions: Some(p),
        ..Default::default()
    })
    .await
    .unwrap();
}

async fn world_with(backend: Backend, options: Options) -> World {
    let app = TestApp::spawn_with(
        backend,
        &[
            Service::Directory,
            Service::DrawingsSync,
            Service::ConnectionManager,
        ],
        options,
    )
    .await;
    let mut op = app.directory_as_operator();
    let (gc, gc_admin) = make(&mut op, "Summit GC", "gina", true).await;
    let (sub, sub_admin) = make(&mut op, "Ridgeline Electric", "raj", true).await;
    let sub_standard = op
        .create_user(pb::CreateUserRequest {
            company_id: sub.clone(),
            display_name: "rita".into(),
            email: "rita@sub.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let gc_project = project(&mut op, &gc, "Harbor Tower").await;
    let sub_project = project(&mut op, &sub, "Harbor Tower - Electrical").await;
    let sub_project2 = project(&mut op, &sub, "Harbor Tower - Lighting").await;
    member(&mut op, &gc_project, &gc_admin, perms(L::Admin, L::Admin)).await;
    member(
        &mut op,
        &gc_project,
        &sub_admin,
        perms(L::None, L::ReadOnly),
    )
    .await;
    for p in [&sub_project, &sub_project2] {
        member(&mut op, p, &sub_admin, perms(L::Admin, L::Admin)).await;
        member(&mut op, p, &sub_standard, perms(L::None, L::Standard)).await;
    }
    World {
        app,
        gc_admin,
        sub_admin,
        sub_standard,
        gc_project,
        sub_project,
        sub_project2,
    }
}

async fn world(backend: Backend) -> World {
    world_with(backend, Options::default()).await
}

/// An upstream drawing with one revision.
struct Sheet {
    area: dpb::DrawingArea,
    set: dpb::DrawingSet,
    revision: dpb::DrawingRevision,
}

impl World {
    fn drawings(&self, user: &str) -> Drawings {
        self.app.drawings(&self.app.user_token(user))
    }

    async fn upload(
        &self,
        user: &str,
        project: &str,
        content: Vec<u8>,
    ) -> Result<dpb::File, Status> {
        let messages = vec![
            dpb::UploadFileRequest {
                part: Some(Part::Header(dpb::upload_file_request::Header {
                    project_id: project.into(),
                    filename: "A-101.pdf".into(),
                    content_type: "application/pdf".into(),
                })),
            },
            dpb::UploadFileRequest {
                part: Some(Part::Chunk(content)),
            },
        ];
        self.drawings(user)
            .upload_file(tokio_stream::iter(messages))
            .await
            .map(|r| r.into_inner())
    }

    async fn area(&self, user: &str, project: &str, name: &str) -> dpb::DrawingArea {
        self.drawings(user)
            .create_drawing_area(dpb::CreateDrawingAreaRequest {
                project_id: project.into(),
                name: name.into(),
                description: format!("{name} floors"),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn set(&self, user: &str, project: &str, name: &str) -> dpb::DrawingSet {
        self.drawings(user)
            .create_drawing_set(dpb::CreateDrawingSetRequest {
                project_id: project.into(),
                name: name.into(),
                date: "2026-03-01".into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn revision(
        &self,
        area: &dpb::DrawingArea,
        set: &dpb::DrawingSet,
        number: &str,
        rev: &str,
    ) -> Result<dpb::DrawingRevision, Status> {
        let project = area.project_id.clone();
        let file = self
            .upload(
                &self.gc_admin,
                &project,
                pdf(&format!("{number} rev {rev}")),
            )
            .await?;
        self.drawings(&self.gc_admin)
            .create_drawing_revision(dpb::CreateDrawingRevisionRequest {
                project_id: project,
                area_id: area.id.clone(),
                set_id: set.id.clone(),
                number: number.into(),
                title: format!("Plan {number}"),
                discipline_name: "Architectural".into(),
                discipline_position: 1,
                revision_number: rev.into(),
                revision_status: "Issued for construction".into(),
                drawing_date: "2026-02-14".into(),
                received_date: "2026-02-20".into(),
                file_id: file.id,
                custom_fields: [("cost_code".to_string(), "03-300".to_string())].into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn publish(
        &self,
        user: &str,
        project: &str,
        revisions: &[&dpb::DrawingRevision],
    ) -> dpb::PublishDrawingRevisionsResponse {
        self.drawings(user)
            .publish_drawing_revisions(dpb::PublishDrawingRevisionsRequest {
                project_id: project.into(),
                revision_ids: revisions.iter().map(|r| r.id.clone()).collect(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// One published upstream sheet in a new area and set.
    async fn sheet(&self, number: &str) -> Sheet {
        let area = self.area(&self.gc_admin, &self.gc_project, "Level 1").await;
        let set = self.set(&self.gc_admin, &self.gc_project, "IFC").await;
        let revision = self.revision(&area, &set, number, "0").await.unwrap();
        self.publish(&self.gc_admin, &self.gc_project, &[&revision])
            .await;
        Sheet {
            area,
            set,
            revision,
        }
    }

    async fn connect(&self, downstream: &str) -> cpb::Connection {
        self.app
            .connections(&self.app.user_token(&self.sub_admin))
            .request_connection(cpb::RequestConnectionRequest {
                downstream_project_id: downstream.into(),
                upstream_project_id: self.gc_project.clone(),
                features: vec![F::Drawings as i32],
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn sync_state(&self, c: &cpb::Connection) -> Option<dpb::SyncStatus> {
        self.drawings(&self.sub_admin)
            .get_sync_status(dpb::GetSyncStatusRequest {
                connection_id: c.id.clone(),
            })
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    async fn in_sync(&self, c: &cpb::Connection) -> dpb::SyncStatus {
        eventually("the backfill", WAIT, || async {
            self.sync_state(c)
                .await
                .filter(|s| s.state() == dpb::SyncState::InSync)
        })
        .await
    }

    /// The downstream drawing log as `user` sees it.
    async fn log(&self, user: &str, project: &str) -> Vec<dpb::Drawing> {
        self.drawings(user)
            .list_drawings(dpb::ListDrawingsRequest {
                project_id: project.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .drawings
    }

    async fn revisions(&self, user: &str, drawing: &str) -> Vec<dpb::DrawingRevision> {
        self.drawings(user)
            .list_drawing_revisions(dpb::ListDrawingRevisionsRequest {
                drawing_id: drawing.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .revisions
    }

    /// Waits until the downstream log (as its admin sees it) satisfies `ok`.
    async fn downstream_until(
        &self,
        project: &str,
        what: &str,
        ok: impl Fn(&[dpb::Drawing]) -> bool,
    ) -> Vec<dpb::Drawing> {
        eventually(what, WAIT, || async {
            let log = self.log(&self.sub_admin, project).await;
            ok(&log).then_some(log)
        })
        .await
    }

    async fn download(&self, user: &str, file_id: &str) -> Vec<u8> {
        let mut stream = self
            .drawings(user)
            .download_file(dpb::DownloadFileRequest { id: file_id.into() })
            .await
            .unwrap()
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(msg) = stream.message().await.unwrap() {
            if let Some(dpb::download_file_response::Part::Chunk(c)) = msg.part {
                bytes.extend(c);
            }
        }
        bytes
    }
}

#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, Status>, expected: &str) {
    let status = result.expect_err("should be refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some(expected), "{status:?}");
}

async fn d01_backfill_copies_every_published_revision(backend: Backend) {
    let w = world(backend).await;
    let a = w.sheet("A-101").await;
    let b = w.revision(&a.area, &a.set, "A-102", "0").await.unwrap();
    w.publish(&w.gc_admin, &w.gc_project, &[&b]).await;
    let unpublished = w.revision(&a.area, &a.set, "A-101", "1").await.unwrap();
    let c = w.connect(&w.sub_project).await;
    let status = w.in_sync(&c).await;
    assert_eq!((status.items_total, status.items_copied), (2, 2));
    let log = w.log(&w.sub_admin, &w.sub_project).await;
    let numbers: Vec<&str> = log.iter().map(|d| d.number.as_str()).collect();
    assert_eq!(numbers, vec!["A-101", "A-102"]);
    let a_copy = &log[0];
    let revs = w.revisions(&w.sub_admin, &a_copy.id).await;
    assert_eq!(
        revs.len(),
        1,
        "the unpublished revision {} stays upstream",
        unpublished.id
    );
    assert_eq!(revs[0].origin.as_ref().unwrap().upstream_id, a.revision.id);
    w.app.stop().await;
}

async fn d02_later_publishes_are_copied_and_unpublished_never_leave(backend: Backend) {
    let w = world(backend).await;
    let a = w.sheet("A-101").await;
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    let rev1 = w.revision(&a.area, &a.set, "A-101", "1").await.unwrap();
    let draft = w.revision(&a.area, &a.set, "A-201", "0").await.unwrap();
    w.publish(&w.gc_admin, &w.gc_project, &[&rev1]).await;
    let log = w
        .downstream_until(&w.sub_project, "revision 1 downstream", |log| {
            log.iter().any(|d| {
                d.current_revision
                    .as_ref()
                    .is_some_and(|r| r.revision_number == "1")
            })
        })
        .await;
    assert_eq!(
        log.len(),
        1,
        "the unpublished A-201 ({}) never leaves",
        draft.id
    );
    assert_eq!(w.revisions(&w.sub_admin, &log[0].id).await.len(), 2);
    w.app.stop().await;
}

async fn d03_copies_carry_every_listed_field(backend: Backend) {
    let w = world(backend).await;
    let a = w.sheet("A-101").await;
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    let up = w
        .drawings(&w.gc_admin)
        .get_drawing(dpb::GetDrawingRequest {
            id: a.revision.drawing_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let copy = &w.log(&w.sub_admin, &w.sub_project).await[0];
    assert_eq!(
        (copy.number.as_str(), copy.title.as_str(), copy.obsolete),
        (up.number.as_str(), up.title.as_str(), up.obsolete)
    );
    assert_eq!(
        (copy.discipline_name.as_str(), copy.discipline_position),
        ("Architectural", 1)
    );
    let (ur, dr) = (
        up.current_revision.unwrap(),
        copy.current_revision.clone().unwrap(),
    );
    assert_eq!(
        (
            dr.revision_number.as_str(),
            dr.revision_status.as_str(),
            dr.drawing_date.as_str(),
            dr.received_date.as_str()
        ),
        (
            ur.revision_number.as_str(),
            ur.revision_status.as_str(),
            ur.drawing_date.as_str(),
            ur.received_date.as_str()
        )
    );
    let areas = w
        .drawings(&w.sub_admin)
        .list_drawing_areas(dpb::ListDrawingAreasRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .areas;
    assert_eq!(
        (areas[0].name.as_str(), areas[0].description.as_str()),
        (a.area.name.as_str(), a.area.description.as_str())
    );
    let sets = w
        .drawings(&w.sub_admin)
        .list_drawing_sets(dpb::ListDrawingSetsRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sets;
    assert_eq!(
        (sets[0].name.as_str(), sets[0].date.as_str()),
        (a.set.name.as_str(), a.set.date.as_str())
    );
    assert_eq!(dr.set_id, sets[0].id);
    assert_eq!(copy.area_id, areas[0].id);
    assert_ne!(
        dr.file_id, ur.file_id,
        "the downstream keeps its own copy of the file"
    );
    assert_eq!(
        w.download(&w.sub_admin, &dr.file_id).await,
        w.download(&w.gc_admin, &ur.file_id).await
    );
    w.app.stop().await;
}

async fn d04_markups_and_custom_fields_stay_upstream(backend: Backend) {
    let w = world(backend).await;
    let a = w.sheet("A-101").await;
    w.drawings(&w.gc_admin)
        .create_markup(dpb::CreateMarkupRequest {
            revision_id: a.revision.id.clone(),
            body: "cloud: check beam".into(),
        })
        .await
        .unwrap();
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    let copy = &w.log(&w.sub_admin, &w.sub_project).await[0];
    assert!(
        copy.current_revision
            .as_ref()
            .unwrap()
            .custom_fields
            .is_empty()
    );
    assert_eq!(
        a.revision
            .custom_fields
            .get("cost_code")
            .map(String::as_str),
        Some("03-300")
    );
    let markups = w
        .drawings(&w.sub_admin)
        .list_markups(dpb::ListMarkupsRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .markups;
    assert!(markups.is_empty());
    w.app.stop().await;
}

async fn d05_copies_arrive_unpublished_for_admins_to_publish(backend: Backend) {
    let w = world(backend).await;
    w.sheet("A-101").await;
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    let admin_view = w.log(&w.sub_admin, &w.sub_project).await;
    let rev = admin_view[0].current_revision.clone().unwrap();
    assert!(!rev.published);
    assert!(
        w.log(&w.sub_standard, &w.sub_project).await.is_empty(),
        "standard users see nothing unpublished"
    );
    let err = w
        .drawings(&w.sub_standard)
        .get_drawing(dpb::GetDrawingRequest {
            id: admin_view[0].id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = w
        .drawings(&w.sub_standard)
        .publish_drawing_revisions(dpb::PublishDrawingRevisionsRequest {
            project_id: w.sub_project.clone(),
            revision_ids: vec![rev.id.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    w.publish(&w.sub_admin, &w.sub_project, &[&rev]).await;
    let seen = w.log(&w.sub_standard, &w.sub_project).await;
    assert_eq!(seen.len(), 1);
    assert!(seen[0].current_revision.as_ref().unwrap().published);
    w.app.stop().await;
}

async fn d06_connected_metadata_is_read_only_downstream(backend: Backend) {
    let w = world(backend).await;
    w.sheet("A-101").await;
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    let copy = w.log(&w.sub_admin, &w.sub_project).await.remove(0);
    let rename = w
        .drawings(&w.sub_admin)
        .update_drawing(dpb::UpdateDrawingRequest {
            drawing: Some(dpb::Drawing {
                id: copy.id.clone(),
                title: "Mine now".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
        })
        .await;
    refused(rename, "CONNECTED_READ_ONLY");
    refused(
        w.drawings(&w.sub_admin)
            .delete_drawing(dpb::DeleteDrawingRequest {
                id: copy.id.clone(),
            })
            .await,
        "CONNECTED_READ_ONLY",
    );
    w.app.stop().await;
}

async fn d07_downstream_markups_stay_and_survive_new_revisions(backend: Backend) {
    let w = world(backend).await;
    let a = w.sheet("A-101").await;
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    let copy = w.log(&w.sub_admin, &w.sub_project).await.remove(0);
    let rev = copy.current_revision.unwrap();
    w.drawings(&w.sub_admin)
        .create_markup(dpb::CreateMarkupRequest {
            revision_id: rev.id.clone(),
            body: "our conduit run".into(),
        })
        .await
        .unwrap();
    let rev1 = w.revision(&a.area, &a.set, "A-101", "1").await.unwrap();
    w.publish(&w.gc_admin, &w.gc_project, &[&rev1]).await;
    w.downstream_until(&w.sub_project, "revision 1", |log| {
        log[0]
            .current_revision
            .as_ref()
            .is_some_and(|r| r.revision_number == "1")
    })
    .await;
    let ours = w
        .drawings(&w.sub_admin)
        .list_markups(dpb::ListMarkupsRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .markups;
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].revision_id, rev.id);
    let theirs = w
        .drawings(&w.gc_admin)
        .list_markups(dpb::ListMarkupsRequest {
            project_id: w.gc_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .markups;
    assert!(theirs.is_empty(), "markups never travel upstream");
    w.app.stop().await;
}

async fn d08_upstream_metadata_changes_reach_the_copies(backend: Backend) {
    let w = world(backend).await;
    let a = w.sheet("A-101").await;
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    let level2 = w.area(&w.gc_admin, &w.gc_project, "Level 2").await;
    w.drawings(&w.gc_admin)
        .update_drawing(dpb::UpdateDrawingRequest {
            drawing: Some(dpb::Drawing {
                id: a.revision.drawing_id.clone(),
                title: "Level 2 plan".into(),
                number: "A-201".into(),
                obsolete: true,
                discipline_name: "Structural".into(),
                discipline_position: 4,
                area_id: level2.id.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: [
                    "title",
                    "number",
                    "obsolete",
                    "discipline_name",
                    "discipline_position",
                    "area_id",
                ]
                .map(String::from)
                .to_vec(),
            }),
        })
        .await
        .unwrap();
    let log = w
        .downstream_until(&w.sub_project, "the rename", |log| {
            log.first().is_some_and(|d| d.number == "A-201")
        })
        .await;
    let d = &log[0];
    assert_eq!(
        (
            d.title.as_str(),
            d.obsolete,
            d.discipline_name.as_str(),
            d.discipline_position
        ),
        ("Level 2 plan", true, "Structural", 4)
    );
    let areas = w
        .drawings(&w.sub_admin)
        .list_drawing_areas(dpb::ListDrawingAreasRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .areas;
    let area = areas.iter().find(|x| x.id == d.area_id).unwrap();
    assert_eq!(area.name, "Level 2");
    w.app.stop().await;
}

async fn d09_upstream_delete_leaves_the_log_and_shows_in_the_report(backend: Backend) {
    let w = world(backend).await;
    let a = w.sheet("A-101").await;
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    w.drawings(&w.gc_admin)
        .delete_drawing(dpb::DeleteDrawingRequest {
            id: a.revision.drawing_id.clone(),
        })
        .await
        .unwrap();
    w.downstream_until(&w.sub_project, "the deletion", |log| log.is_empty())
        .await;
    let areas = w
        .drawings(&w.sub_admin)
        .list_drawing_areas(dpb::ListDrawingAreasRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .areas;
    assert_eq!(areas.len(), 1, "the area stays");
    let report = w
        .drawings(&w.sub_admin)
        .list_deleted_drawing_revisions(dpb::ListDeletedDrawingRevisionsRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revisions;
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].drawing_number, "A-101");
    let err = w
        .drawings(&w.sub_standard)
        .list_deleted_drawing_revisions(dpb::ListDeletedDrawingRevisionsRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    w.app.stop().await;
}

async fn d10_no_drawings_in_connected_areas_or_sets(backend: Backend) {
    let w = world(backend).await;
    w.sheet("A-101").await;
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    let drawings = w.drawings(&w.sub_admin);
    let areas = drawings
        .clone()
        .list_drawing_areas(dpb::ListDrawingAreasRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .areas;
    let sets = drawings
        .clone()
        .list_drawing_sets(dpb::ListDrawingSetsRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sets;
    let own_area = w.area(&w.sub_admin, &w.sub_project, "Our area").await;
    let own_set = w.set(&w.sub_admin, &w.sub_project, "Our set").await;
    let file = w
        .upload(&w.sub_admin, &w.sub_project, pdf("ours"))
        .await
        .unwrap();
    let add = |area: &str, set: &str| {
        let mut client = drawings.clone();
        let req = dpb::CreateDrawingRevisionRequest {
            project_id: w.sub_project.clone(),
            area_id: area.into(),
            set_id: set.into(),
            number: "E-1".into(),
            title: "Power plan".into(),
            file_id: file.id.clone(),
            ..Default::default()
        };
        async move {
            client
                .create_drawing_revision(req)
                .await
                .map(|r| r.into_inner())
        }
    };
    refused(
        add(&areas[0].id, &own_set.id).await,
        "CONNECTED_AREA_READ_ONLY",
    );
    refused(
        add(&own_area.id, &sets[0].id).await,
        "CONNECTED_SET_READ_ONLY",
    );
    let ours = add(&own_area.id, &own_set.id).await.unwrap();
    assert!(!ours.connected);
    // Our own drawings never travel upstream.
    w.publish(&w.sub_admin, &w.sub_project, &[&ours]).await;
    assert!(
        w.log(&w.gc_admin, &w.gc_project)
            .await
            .iter()
            .all(|d| d.number != "E-1")
    );
    w.app.stop().await;
}

async fn d11_connected_items_say_where_they_came_from(backend: Backend) {
    let w = world(backend).await;
    let a = w.sheet("A-101").await;
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    let copy = w.log(&w.sub_admin, &w.sub_project).await.remove(0);
    assert!(copy.connected);
    let origin = copy.origin.unwrap();
    assert_eq!(
        (
            origin.connection_id.as_str(),
            origin.upstream_project_id.as_str(),
            origin.upstream_id.as_str()
        ),
        (
            c.id.as_str(),
            w.gc_project.as_str(),
            a.revision.drawing_id.as_str()
        )
    );
    let rev = copy.current_revision.unwrap();
    assert!(rev.connected);
    let up = w.log(&w.gc_admin, &w.gc_project).await.remove(0);
    assert!(!up.connected && up.origin.is_none());
    w.app.stop().await;
}

async fn d12_after_a_disconnection_nothing_more_arrives(backend: Backend) {
    let w = world(backend).await;
    let a = w.sheet("A-101").await;
    let gone = w.connect(&w.sub_project).await;
    let stays = w.connect(&w.sub_project2).await;
    w.in_sync(&gone).await;
    w.in_sync(&stays).await;
    w.app
        .connections(&w.app.user_token(&w.sub_admin))
        .disconnect_connection(cpb::DisconnectConnectionRequest {
            id: gone.id.clone(),
            reason: "done".into(),
        })
        .await
        .unwrap();
    eventually("the sync stopped", WAIT, || async {
        w.sync_state(&gone)
            .await
            .filter(|s| s.state() == dpb::SyncState::Stopped)
    })
    .await;
    let rev1 = w.revision(&a.area, &a.set, "A-101", "1").await.unwrap();
    w.publish(&w.gc_admin, &w.gc_project, &[&rev1]).await;
    // The other downstream gets it: the publish has been handled.
    w.downstream_until(
        &w.sub_project2,
        "revision 1 on the connected project",
        |log| {
            log[0]
                .current_revision
                .as_ref()
                .is_some_and(|r| r.revision_number == "1")
        },
    )
    .await;
    let kept = w.log(&w.sub_admin, &w.sub_project).await;
    assert_eq!(kept.len(), 1, "copies made before stay");
    assert_eq!(
        kept[0].current_revision.as_ref().unwrap().revision_number,
        "0",
        "nothing new arrived"
    );
    w.app.stop().await;
}

async fn c17_projects_over_the_revision_limit_cannot_connect_for_drawings(backend: Backend) {
    let mut options = Options::default();
    options.drawings.max_connected_revisions = 1;
    let w = world_with(backend, options).await;
    let a = w.sheet("A-101").await;
    let mut cm = w.app.connections(&w.app.user_token(&w.sub_admin));
    let request = |features: Vec<F>| cpb::RequestConnectionRequest {
        downstream_project_id: w.sub_project.clone(),
        upstream_project_id: w.gc_project.clone(),
        features: features.into_iter().map(|f| f as i32).collect(),
        request_id: String::new(),
    };
    let rev = w.revision(&a.area, &a.set, "A-102", "0").await.unwrap();
    w.publish(&w.gc_admin, &w.gc_project, &[&rev]).await;
    refused(
        cm.request_connection(request(vec![F::Drawings])).await,
        "TOO_MANY_DRAWING_REVISIONS",
    );
    // Other features are not limited.
    let c = cm
        .request_connection(request(vec![F::Submittals]))
        .await
        .unwrap()
        .into_inner();
    let add = cm
        .add_connection_features(cpb::AddConnectionFeaturesRequest {
            id: c.id,
            features: vec![F::Drawings as i32],
        })
        .await;
    refused(add, "TOO_MANY_DRAWING_REVISIONS");
    w.app.stop().await;
}

async fn uploads_must_be_pdfs_within_the_limit_and_store_nothing_otherwise(backend: Backend) {
    let mut options = Options::default();
    options.drawings.max_upload_bytes = 64;
    let w = world_with(backend, options).await;
    let err = w
        .upload(&w.gc_admin, &w.gc_project, b"PK\x03\x04 a zip".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = w
        .upload(&w.gc_admin, &w.gc_project, pdf(&"x".repeat(100)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_field(&err).as_deref(), Some("chunk"));
    let stored = walk(&w.app.env.dir.join("blobs"));
    assert_eq!(stored, 0, "nothing stored");
    let ok = w
        .upload(&w.gc_admin, &w.gc_project, pdf("ok"))
        .await
        .unwrap();
    assert_eq!(ok.size_bytes, pdf("ok").len() as i64);
    assert_eq!(walk(&w.app.env.dir.join("blobs")), 1);
    let err = w
        .upload(&w.sub_admin, &w.gc_project, pdf("not mine"))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "READ_ONLY members do not upload"
    );
    w.app.stop().await;
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn an_undone_connection_leaves_no_copies(backend: Backend) {
    let w = world(backend).await;
    w.sheet("A-101").await;
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    assert_eq!(w.log(&w.sub_admin, &w.sub_project).await.len(), 1);
    w.app
        .connections(&w.app.user_token(&w.sub_admin))
        .undo_connection(cpb::UndoConnectionRequest { id: c.id.clone() })
        .await
        .unwrap();
    w.downstream_until(&w.sub_project, "copies withdrawn", |log| log.is_empty())
        .await;
    let areas = w
        .drawings(&w.sub_admin)
        .list_drawing_areas(dpb::ListDrawingAreasRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .areas;
    assert!(areas.is_empty());
    w.app.stop().await;
}

/// Collects drawings events for the notification checks.
struct Collect(std::sync::Mutex<Vec<Envelope>>);

#[async_trait]
impl inbox::InboxHandler for Collect {
    async fn handle(&self, _tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

async fn end_to_end_connect_watch_publish_rename_delete_disconnect(backend: Backend) {
    let w = world(backend).await;
    let listener_db = w
        .app
        .env
        .migrated_db(
            "listener",
            &ServiceMigrations {
                postgres: sqlx::migrate!("migrations/postgres"),
                sqlite: sqlx::migrate!("migrations/sqlite"),
                libraries: Vec::new(),
            },
        )
        .await;
    let seen = Arc::new(Collect(Default::default()));
    let sub = inbox::subscribe(
        w.app.env.bus.as_ref(),
        listener_db,
        SubscriptionSpec {
            durable: "listener".into(),
            context: "drawings".into(),
            retry: RetryPolicy::default(),
        },
        seen.clone(),
    )
    .await
    .unwrap();
    let a = w.sheet("A-101").await;
    let b = w.revision(&a.area, &a.set, "A-102", "0").await.unwrap();
    w.publish(&w.gc_admin, &w.gc_project, &[&b]).await;
    let c = w.connect(&w.sub_project).await;
    // Watch the backfill live.
    let mut watch = w
        .drawings(&w.sub_admin)
        .watch_sync_status(dpb::WatchSyncStatusRequest {
            connection_id: c.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let done = tokio::time::timeout(WAIT, async {
        while let Some(s) = watch.message().await.unwrap() {
            if s.state() == dpb::SyncState::InSync {
                return s;
            }
        }
        panic!("stream ended before IN_SYNC")
    })
    .await
    .expect("IN_SYNC within the deadline");
    assert_eq!(done.items_copied, 2);
    // The downstream admin publishes; a standard user sees them.
    let log = w.log(&w.sub_admin, &w.sub_project).await;
    let revs: Vec<dpb::DrawingRevision> = log
        .iter()
        .map(|d| d.current_revision.clone().unwrap())
        .collect();
    w.publish(
        &w.sub_admin,
        &w.sub_project,
        &revs.iter().collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(w.log(&w.sub_standard, &w.sub_project).await.len(), 2);
    // A new revision upstream, one publish of one sheet: one DrawingsCopied.
    let rev1 = w.revision(&a.area, &a.set, "A-101", "1").await.unwrap();
    let publish = w.publish(&w.gc_admin, &w.gc_project, &[&rev1]).await;
    w.downstream_until(&w.sub_project, "A-101 rev 1", |log| {
        log.iter().any(|d| {
            d.current_revision
                .as_ref()
                .is_some_and(|r| r.revision_number == "1")
        })
    })
    .await;
    // Rename one, delete the other.
    w.drawings(&w.gc_admin)
        .update_drawing(dpb::UpdateDrawingRequest {
            drawing: Some(dpb::Drawing {
                id: a.revision.drawing_id.clone(),
                title: "Ground floor".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
        })
        .await
        .unwrap();
    w.drawings(&w.gc_admin)
        .delete_drawing(dpb::DeleteDrawingRequest {
            id: b.drawing_id.clone(),
        })
        .await
        .unwrap();
    let log = w
        .downstream_until(&w.sub_project, "rename and delete", |log| {
            log.len() == 1 && log[0].title == "Ground floor"
        })
        .await;
    assert_eq!(log[0].number, "A-101");
    let events = eventually("the notification events", WAIT, || async {
        let got = seen.0.lock().unwrap().clone();
        let has = |t: &str| got.iter().any(|e| e.event_type.ends_with(t));
        (has(".InitialSyncCompleted") && has(".DrawingsCopied") && has(".DrawingsDeletedUpstream"))
            .then_some(got)
    })
    .await;
    let initial: dpb::InitialSyncCompleted = connectability_platform::events::decode(
        events
            .iter()
            .find(|e| e.event_type.ends_with(".InitialSyncCompleted"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            initial.revisions_copied,
            initial.drawings_copied,
            initial.downstream_project_id.as_str()
        ),
        (2, 2, w.sub_project.as_str())
    );
    let copied: Vec<dpb::DrawingsCopied> = events
        .iter()
        .filter(|e| e.event_type.ends_with(".DrawingsCopied"))
        .map(|e| connectability_platform::events::decode(e).unwrap())
        .collect();
    assert_eq!(copied.len(), 1, "one message per publish per downstream");
    assert_eq!(
        (copied[0].publish_id.as_str(), copied[0].revisions_copied),
        (publish.publish_id.as_str(), 1)
    );
    let deleted: dpb::DrawingsDeletedUpstream = connectability_platform::events::decode(
        events
            .iter()
            .find(|e| e.event_type.ends_with(".DrawingsDeletedUpstream"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(deleted.drawing_numbers, vec!["A-102"]);
    // Disconnect: later changes never arrive.
    w.app
        .connections(&w.app.user_token(&w.gc_admin))
        .disconnect_connection(cpb::DisconnectConnectionRequest {
            id: c.id.clone(),
            reason: "finished".into(),
        })
        .await
        .unwrap();
    eventually("STOPPED", WAIT, || async {
        w.sync_state(&c)
            .await
            .filter(|s| s.state() == dpb::SyncState::Stopped)
    })
    .await;
    sub.stop().await;
    w.app.stop().await;
}

/// Everything the downstream admin sees of the copies.
async fn downstream_snapshot(
    w: &World,
) -> (
    Vec<dpb::Drawing>,
    Vec<Vec<dpb::DrawingRevision>>,
    Vec<dpb::DrawingArea>,
    Vec<dpb::DrawingSet>,
) {
    let log = w.log(&w.sub_admin, &w.sub_project).await;
    let mut revisions = Vec::new();
    for d in &log {
        revisions.push(w.revisions(&w.sub_admin, &d.id).await);
    }
    let mut client = w.drawings(&w.sub_admin);
    let areas = client
        .list_drawing_areas(dpb::ListDrawingAreasRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .areas;
    let sets = client
        .list_drawing_sets(dpb::ListDrawingSetsRequest {
            project_id: w.sub_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sets;
    (log, revisions, areas, sets)
}

async fn repeated_and_reordered_events_leave_the_same_state(backend: Backend) {
    use connectability_store::inbox::{Applied, InboxConsumer};
    use sqlx::Row;
    let w = world(backend).await;
    let a = w.sheet("A-101").await;
    let c = w.connect(&w.sub_project).await;
    w.in_sync(&c).await;
    let rev1 = w.revision(&a.area, &a.set, "A-101", "1").await.unwrap();
    w.publish(&w.gc_admin, &w.gc_project, &[&rev1]).await;
    w.drawings(&w.gc_admin)
        .update_drawing(dpb::UpdateDrawingRequest {
            drawing: Some(dpb::Drawing {
                id: a.revision.drawing_id.clone(),
                title: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
        })
        .await
        .unwrap();
    w.downstream_until(&w.sub_project, "publish and rename", |log| {
        log[0].title == "Renamed"
            && log[0]
                .current_revision
                .as_ref()
                .is_some_and(|r| r.revision_number == "1")
    })
    .await;
    let before = downstream_snapshot(&w).await;

    // The real events, as drawings-sync wrote them to its outbox.
    let db = w.app.db(Service::DrawingsSync).clone();
    let rows = sqlx::query("SELECT event_id, event_type, source, subject, time_ms, traceparent, data FROM outbox ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .unwrap();
    let events: Vec<Envelope> = rows
        .iter()
        .map(|r| Envelope {
            id: r.get("event_id"),
            event_type: r.get("event_type"),
            source: r.get("source"),
            subject: r.get("subject"),
            time_ms: r.get("time_ms"),
            traceparent: r.get("traceparent"),
            data: r.get("data"),
        })
        .filter(|e| {
            e.event_type.ends_with(".RevisionsPublished")
                || e.event_type.ends_with(".DrawingUpdated")
        })
        .collect();
    assert!(events.len() >= 3, "two publishes and a rename");
    let core = Arc::new(drawings_sync::sync::DrawingSync(
        connectability_sync::Engine::new(
            db.clone(),
            connectability_blobs::Blobs::from_url(&format!(
                "file://{}",
                w.app.env.dir.join("blobs").display()
            ))
            .unwrap(),
            Arc::new(w.app.clock.clone()),
            Default::default(),
            w.app.connections_gateway(drawings_sync::NAME),
        ),
    ));
    let handler = Arc::new(drawings_sync::sync::DrawingEvents(core));
    // Delivered again, in order, then twice more in reverse order (fresh inboxes, so the
    // handler really runs each time), then once more to an inbox that has them.
    let again = InboxConsumer::new(db.clone(), "replay-in-order", handler.clone());
    for e in &events {
        assert_eq!(again.apply(e).await.unwrap(), Applied::Now);
    }
    let reversed = InboxConsumer::new(db.clone(), "replay-reversed", handler.clone());
    for e in events.iter().rev() {
        reversed.apply(e).await.unwrap();
    }
    assert_eq!(
        again.apply(&events[0]).await.unwrap(),
        Applied::AlreadyHandled
    );
    assert_eq!(downstream_snapshot(&w).await, before);
    w.app.stop().await;
}

on_both_backends!(
    repeated_and_reordered_events_leave_the_same_state,
    d01_backfill_copies_every_published_revision,
    d02_later_publishes_are_copied_and_unpublished_never_leave,
    d03_copies_carry_every_listed_field,
    d04_markups_and_custom_fields_stay_upstream,
    d05_copies_arrive_unpublished_for_admins_to_publish,
    d06_connected_metadata_is_read_only_downstream,
    d07_downstream_markups_stay_and_survive_new_revisions,
    d08_upstream_metadata_changes_reach_the_copies,
    d09_upstream_delete_leaves_the_log_and_shows_in_the_report,
    d10_no_drawings_in_connected_areas_or_sets,
    d11_connected_items_say_where_they_came_from,
    d12_after_a_disconnection_nothing_more_arrives,
    c17_projects_over_the_revision_limit_cannot_connect_for_drawings,
    uploads_must_be_pdfs_within_the_limit_and_store_nothing_otherwise,
    an_undone_connection_leaves_no_copies,
    end_to_end_connect_watch_publish_rename_delete_disconnect,
);
