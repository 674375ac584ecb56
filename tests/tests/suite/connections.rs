//! The connection manager through gRPC, as clients call it, with the real directory behind
//! it (C1-C16, C18; C17 arrives with drawings-sync).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use connectability_events::{Envelope, RetryPolicy, SubscriptionSpec};
use connectability_platform::errors::{bad_field, reason, reasons};
use connectability_proto::{
    connections::v1::{
        self as cpb, ApprovalMode, ConnectionAction as A, ConnectionStatus as S, Feature as F,
    },
    directory::v1::{self as pb, PermissionLevel as L},
};
use connectability_store::{ServiceMigrations, Tx, inbox};
use connectability_testkit::{AuthedChannel, Backend, Service, TestApp, eventually};
use tonic::{Code, Status};

type Directory = pb::directory_service_client::DirectoryServiceClient<AuthedChannel>;
type Connections = cpb::connection_service_client::ConnectionServiceClient<AuthedChannel>;

/// Companies: a GC (auto-approve), a reviewing GC, a subcontractor, a company in another
/// storage location, a GovCloud company. The sub's admin collaborates on every GC project.
struct World {
    app: TestApp,
    gc: pb::Company,
    sub: pb::Company,
    reviewer: pb::Company,
    gc_admin: pb::User,
    rev_admin: pb::User,
    sub_admin: pb::User,
    sub_viewer: pb::User,
    gc_member: pb::User,
    outsider: pb::User,
    gc_project: pb::Project,
    gc_project2: pb::Project,
    rev_project: pb::Project,
    euro_project: pb::Project,
    fed_project: pb::Project,
    sub_project: pb::Project,
    sub_project2: pb::Project,
    sub_inactive: pb::Project,
}

fn perms(cm: L, drawings: L, rfis: L, submittals: L) -> pb::ToolPermissions {
    pb::ToolPermissions {
        connection_manager: cm as i32,
        drawings: drawings as i32,
        rfis: rfis as i32,
        submittals: submittals as i32,
    }
}

const ADMIN: fn() -> pb::ToolPermissions = || perms(L::Admin, L::Admin, L::Admin, L::Admin);
/// What a subcontractor gets on a GC project: enough to connect for drawings and submittals.
const COLLABORATOR: fn() -> pb::ToolPermissions =
    || perms(L::None, L::ReadOnly, L::None, L::ReadOnly);

async fn company(op: &mut Directory, name: &str, fsl: &str, govcloud: bool) -> pb::Company {
    op.create_company(pb::CreateCompanyRequest {
        name: name.into(),
        storage_location: fsl.into(),
        govcloud,
        request_id: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn user(op: &mut Directory, company: &pb::Company, name: &str, admin: bool) -> pb::User {
    let u = op
        .create_user(pb::CreateUserRequest {
            company_id: company.id.clone(),
            display_name: name.into(),
            email: format!(
                "{}@{}.example",
                name.to_lowercase().replace(' ', "."),
                company.id
            ),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    if admin {
        op.set_company_admin(pb::SetCompanyAdminRequest {
            company_id: company.id.clone(),
            user_id: u.id.clone(),
            admin: true,
        })
        .await
        .unwrap();
    }
    u
}

async fn project(
    op: &mut Directory,
    company: &pb::Company,
    name: &str,
    active: bool,
) -> pb::Project {
    op.create_project(pb::CreateProjectRequest {
        company_id: company.id.clone(),
        name: name.into(),
        active: Some(active),
        request_id: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn member(
    op: &mut Directory,
    project: &pb::Project,
    user: &pb::User,
    p: pb::ToolPermissions,
) {
    op.add_project_member(pb::AddProjectMemberRequest {
        project_id: project.id.clone(),
        user_id: user.id.clone(),
        permissions: Some(p),
        request_id: String::new(),
    })
    .await
    .unwrap();
}

async fn set_levels(
    op: &mut Directory,
    project: &pb::Project,
    user: &pb::User,
    p: pb::ToolPermissions,
) {
    op.update_project_member(pb::UpdateProjectMemberRequest {
        project_id: project.id.clone(),
        user_id: user.id.clone(),
        permissions: Some(p),
    })
    .await
    .unwrap();
}

async fn world(backend: Backend) -> World {
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
    let gc = company(&mut op, "Summit GC", "us-east", false).await;
    let reviewer = company(&mut op, "Keystone Builders", "us-east", false).await;
    let sub = company(&mut op, "Ridgeline Electric", "us-east", false).await;
    let euro = company(&mut op, "Alpine Mechanical", "eu-central", false).await;
    let fed = company(&mut op, "Federal Works", "us-east", true).await;
    let gc_admin = user(&mut op, &gc, "Gina Torres", true).await;
    let gc_member = user(&mut op, &gc, "Sam Okafor", false).await;
    let rev_admin = user(&mut op, &reviewer, "Kim Novak", true).await;
    let sub_admin = user(&mut op, &sub, "Raj Patel", true).await;
    let sub_viewer = user(&mut op, &sub, "Rita Chen", false).await;
    let outsider = user(&mut op, &euro, "Anton Weber", true).await;

    let gc_project = project(&mut op, &gc, "Harbor Tower", true).await;
    let gc_project2 = project(&mut op, &gc, "Secret Bid", true).await;
    let rev_project = project(&mut op, &reviewer, "Keystone HQ", true).await;
    let euro_project = project(&mut op, &euro, "Alpine Plant", true).await;
    let fed_project = project(&mut op, &fed, "Federal Annex", true).await;
    let sub_project = project(&mut op, &sub, "Harbor Tower - Electrical", true).await;
    let sub_project2 = project(&mut op, &sub, "Keystone - Electrical", true).await;
    let sub_inactive = project(&mut op, &sub, "Old Job", false).await;

    member(&mut op, &gc_project, &gc_admin, ADMIN()).await;
    member(
        &mut op,
        &gc_project,
        &gc_member,
        perms(L::None, L::Standard, L::Standard, L::None),
    )
    .await;
    member(&mut op, &rev_project, &rev_admin, ADMIN()).await;
    member(&mut op, &euro_project, &outsider, ADMIN()).await;
    for p in [&gc_project, &rev_project, &euro_project, &fed_project] {
        member(&mut op, p, &sub_admin, COLLABORATOR()).await;
    }
    for p in [&sub_project, &sub_project2, &sub_inactive] {
        member(&mut op, p, &sub_admin, ADMIN()).await;
    }
    member(
        &mut op,
        &sub_project,
        &sub_viewer,
        perms(L::ReadOnly, L::ReadOnly, L::None, L::None),
    )
    .await;
    let w = World {
        app,
        gc,
        sub,
        reviewer,
        gc_admin,
        rev_admin,
        sub_admin,
        sub_viewer,
        gc_member,
        outsider,
        gc_project,
        gc_project2,
        rev_project,
        euro_project,
        fed_project,
        sub_project,
        sub_project2,
        sub_inactive,
    };
    w.connections(&w.rev_admin)
        .update_company_connection_settings(cpb::UpdateCompanyConnectionSettingsRequest {
            company_id: w.reviewer.id.clone(),
            approval_mode: ApprovalMode::RequireReview as i32,
        })
        .await
        .unwrap();
    w
}

impl World {
    fn connections(&self, user: &pb::User) -> Connections {
        self.app.connections(&self.app.user_token(&user.id))
    }

    fn operator(&self) -> Directory {
        self.app.directory_as_operator()
    }

    async fn request(
        &self,
        user: &pb::User,
        down: &pb::Project,
        up: &pb::Project,
        features: &[F],
    ) -> Result<cpb::Connection, Status> {
        self.connections(user)
            .request_connection(cpb::RequestConnectionRequest {
                downstream_project_id: down.id.clone(),
                upstream_project_id: up.id.clone(),
                features: features.iter().map(|f| *f as i32).collect(),
                request_id: String::new(),
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn connect(&self, down: &pb::Project, up: &pb::Project) -> cpb::Connection {
        self.request(&self.sub_admin, down, up, &[F::Drawings])
            .await
            .unwrap()
    }

    async fn get(&self, user: &pb::User, c: &cpb::Connection) -> Result<cpb::Connection, Status> {
        self.connections(user)
            .get_connection(cpb::GetConnectionRequest { id: c.id.clone() })
            .await
            .map(|r| r.into_inner())
    }

    async fn disconnect(
        &self,
        user: &pb::User,
        c: &cpb::Connection,
        why: &str,
    ) -> Result<cpb::Connection, Status> {
        self.connections(user)
            .disconnect_connection(cpb::DisconnectConnectionRequest {
                id: c.id.clone(),
                reason: why.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn eligibility(
        &self,
        user: &pb::User,
        down: &pb::Project,
        up: &pb::Project,
        features: &[F],
    ) -> Vec<String> {
        self.connections(user)
            .check_connection_eligibility(cpb::CheckConnectionEligibilityRequest {
                downstream_project_id: down.id.clone(),
                upstream_project_id: up.id.clone(),
                features: features.iter().map(|f| *f as i32).collect(),
            })
            .await
            .unwrap()
            .into_inner()
            .reasons
    }
}

#[track_caller]
fn refused(result: Result<cpb::Connection, Status>, expected: &str) -> Status {
    let status = result.expect_err("should be refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some(expected), "{status:?}");
    status
}

fn status_of(c: &cpb::Connection) -> S {
    c.status()
}

async fn c01_connection_needs_at_least_one_feature(backend: Backend) {
    let w = world(backend).await;
    refused(
        w.request(&w.sub_admin, &w.sub_project, &w.gc_project, &[])
            .await,
        "NO_FEATURES_SELECTED",
    );
    let c = w
        .request(
            &w.sub_admin,
            &w.sub_project,
            &w.gc_project,
            &[F::Drawings, F::Drawings],
        )
        .await
        .unwrap();
    assert_eq!(
        c.features,
        vec![F::Drawings as i32],
        "one upstream, one downstream, the features once"
    );
    assert_eq!(c.upstream_project_id, w.gc_project.id);
    assert_eq!(c.downstream_project_id, w.sub_project.id);
    assert_eq!(c.upstream_company_id, w.gc.id);
    assert_eq!(c.downstream_company_id, w.sub.id);
    let err = w
        .connections(&w.sub_admin)
        .request_connection(cpb::RequestConnectionRequest {
            downstream_project_id: w.sub_project2.id.clone(),
            upstream_project_id: w.gc_project.id.clone(),
            features: vec![42],
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_field(&err).as_deref(), Some("features"));
    w.app.stop().await;
}

async fn c02_only_downstream_connection_manager_admins_initiate(backend: Backend) {
    let w = world(backend).await;
    // CM READ_ONLY downstream and not in the upstream directory.
    let err = w
        .request(&w.sub_viewer, &w.sub_project, &w.gc_project, &[F::Drawings])
        .await
        .unwrap_err();
    // The viewer cannot see the GC project at all: NOT_FOUND, no hint.
    assert_eq!(err.code(), Code::NotFound);
    let mut op = w.operator();
    member(&mut op, &w.gc_project, &w.sub_viewer, COLLABORATOR()).await;
    refused(
        w.request(&w.sub_viewer, &w.sub_project, &w.gc_project, &[F::Drawings])
            .await,
        "NOT_DOWNSTREAM_ADMIN",
    );
    // A company admin sees the company's projects without being in their directory.
    member(&mut op, &w.gc_project2, &w.gc_admin, ADMIN()).await;
    let mut admin_only = w.operator();
    admin_only
        .remove_project_member(pb::RemoveProjectMemberRequest {
            project_id: w.gc_project.id.clone(),
            user_id: w.gc_admin.id.clone(),
        })
        .await
        .unwrap();
    refused(
        w.request(&w.gc_admin, &w.gc_project2, &w.gc_project, &[F::Drawings])
            .await,
        "NOT_UPSTREAM_MEMBER",
    );
    // The upstream side only needs membership: the sub's admin has NONE on its Connection Manager.
    let c = w
        .request(&w.sub_admin, &w.sub_project, &w.gc_project, &[F::Drawings])
        .await
        .unwrap();
    assert_eq!(status_of(&c), S::Active);
    w.app.stop().await;
}

async fn c03_feature_access_is_needed_in_both_projects(backend: Backend) {
    let w = world(backend).await;
    // NONE on RFIs upstream.
    let status = refused(
        w.request(
            &w.sub_admin,
            &w.sub_project,
            &w.gc_project,
            &[F::Drawings, F::Rfis],
        )
        .await,
        "FEATURE_ACCESS_REQUIRED",
    );
    assert!(
        status.message().contains("FEATURE_RFIS"),
        "{}",
        status.message()
    );
    // READ_ONLY is enough, on both sides.
    set_levels(
        &mut w.operator(),
        &w.gc_project,
        &w.sub_admin,
        perms(L::None, L::ReadOnly, L::ReadOnly, L::ReadOnly),
    )
    .await;
    set_levels(
        &mut w.operator(),
        &w.sub_project,
        &w.sub_admin,
        perms(L::Admin, L::ReadOnly, L::None, L::ReadOnly),
    )
    .await;
    refused(
        w.request(&w.sub_admin, &w.sub_project, &w.gc_project, &[F::Rfis])
            .await,
        "FEATURE_ACCESS_REQUIRED",
    );
    let c = w
        .request(
            &w.sub_admin,
            &w.sub_project,
            &w.gc_project,
            &[F::Drawings, F::Submittals],
        )
        .await
        .unwrap();
    assert_eq!(c.features, vec![F::Drawings as i32, F::Submittals as i32]);
    w.app.stop().await;
}

async fn c04_both_projects_must_be_active(backend: Backend) {
    let w = world(backend).await;
    refused(
        w.request(&w.sub_admin, &w.sub_inactive, &w.gc_project, &[F::Drawings])
            .await,
        "PROJECT_INACTIVE",
    );
    w.app
        .directory(&w.app.user_token(&w.gc_admin.id))
        .update_project(pb::UpdateProjectRequest {
            project: Some(pb::Project {
                id: w.gc_project.id.clone(),
                active: false,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["active".into()],
            }),
        })
        .await
        .unwrap();
    refused(
        w.request(&w.sub_admin, &w.sub_project, &w.gc_project, &[F::Drawings])
            .await,
        "PROJECT_INACTIVE",
    );
    w.app.stop().await;
}

async fn c05_companies_must_share_the_storage_location(backend: Backend) {
    let w = world(backend).await;
    refused(
        w.request(
            &w.sub_admin,
            &w.sub_project,
            &w.euro_project,
            &[F::Drawings],
        )
        .await,
        "STORAGE_LOCATION_MISMATCH",
    );
    w.app.stop().await;
}

async fn c06_govcloud_companies_cannot_take_part(backend: Backend) {
    let w = world(backend).await;
    refused(
        w.request(&w.sub_admin, &w.sub_project, &w.fed_project, &[F::Drawings])
            .await,
        "GOVCLOUD_NOT_SUPPORTED",
    );
    w.app.stop().await;
}

async fn c07_no_self_connection_but_same_company_may_connect(backend: Backend) {
    let w = world(backend).await;
    refused(
        w.request(&w.sub_admin, &w.sub_project, &w.sub_project, &[F::Drawings])
            .await,
        "SAME_PROJECT",
    );
    let c = w
        .request(
            &w.sub_admin,
            &w.sub_project2,
            &w.sub_project,
            &[F::Drawings],
        )
        .await
        .unwrap();
    assert_eq!(status_of(&c), S::Active);
    assert_eq!(c.upstream_company_id, c.downstream_company_id);
    w.app.stop().await;
}

async fn c08_downstream_has_one_upstream(backend: Backend) {
    let w = world(backend).await;
    w.connect(&w.sub_project, &w.gc_project).await;
    refused(
        w.request(&w.sub_admin, &w.sub_project, &w.rev_project, &[F::Drawings])
            .await,
        "DOWNSTREAM_ALREADY_CONNECTED",
    );
    // A pending request counts too.
    let pending = w.connect(&w.sub_project2, &w.rev_project).await;
    assert_eq!(status_of(&pending), S::Pending);
    refused(
        w.request(&w.sub_admin, &w.sub_project2, &w.gc_project, &[F::Drawings])
            .await,
        "DOWNSTREAM_ALREADY_CONNECTED",
    );
    w.app.stop().await;
}

async fn c08_concurrent_requests_never_both_succeed(backend: Backend) {
    let w = world(backend).await;
    let replica = w.app.connection_manager_replica().await;
    let token = w.app.user_token(&w.sub_admin.id);
    let mut calls = Vec::new();
    for i in 0..8 {
        let mut client = if i % 2 == 0 {
            w.app.connections(&token)
        } else {
            replica.connections(&token)
        };
        let up = if i % 3 == 0 {
            w.rev_project.id.clone()
        } else {
            w.gc_project.id.clone()
        };
        let req = cpb::RequestConnectionRequest {
            downstream_project_id: w.sub_project.id.clone(),
            upstream_project_id: up,
            features: vec![F::Drawings as i32],
            request_id: String::new(),
        };
        calls.push(tokio::spawn(
            async move { client.request_connection(req).await },
        ));
    }
    let mut ok = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert_eq!(
                    reason(&status).as_deref(),
                    Some("DOWNSTREAM_ALREADY_CONNECTED")
                );
            }
        }
    }
    assert_eq!(ok, 1, "exactly one of eight concurrent requests wins");
    let open = w
        .connections(&w.sub_admin)
        .list_connections(cpb::ListConnectionsRequest {
            project_id: w.sub_project.id.clone(),
            statuses: vec![S::Pending as i32, S::Active as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .connections;
    assert_eq!(open.len(), 1);
    replica.stop().await;
    w.app.stop().await;
}

async fn c09_upstream_serves_many_downstreams(backend: Backend) {
    let w = world(backend).await;
    let a = w.connect(&w.sub_project, &w.gc_project).await;
    let b = w.connect(&w.sub_project2, &w.gc_project).await;
    assert_eq!((status_of(&a), status_of(&b)), (S::Active, S::Active));
    let upstream = w
        .connections(&w.gc_admin)
        .list_connections(cpb::ListConnectionsRequest {
            project_id: w.gc_project.id.clone(),
            role: cpb::ConnectionRole::Upstream as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .connections;
    assert_eq!(upstream.len(), 2);
    w.app.stop().await;
}

async fn c10_roles_are_fixed(backend: Backend) {
    let w = world(backend).await;
    w.connect(&w.sub_project, &w.gc_project).await;
    // sub_project is downstream: it can never be upstream.
    refused(
        w.request(
            &w.sub_admin,
            &w.sub_project2,
            &w.sub_project,
            &[F::Drawings],
        )
        .await,
        "PROJECT_IS_DOWNSTREAM",
    );
    // gc_project is upstream: it can never be downstream.
    let mut op = w.operator();
    member(&mut op, &w.gc_project2, &w.gc_admin, ADMIN()).await;
    refused(
        w.request(&w.gc_admin, &w.gc_project, &w.gc_project2, &[F::Drawings])
            .await,
        "PROJECT_IS_UPSTREAM",
    );
    w.app.stop().await;
}

async fn c10_concurrent_role_conflicts_never_both_succeed(backend: Backend) {
    let w = world(backend).await;
    let replica = w.app.connection_manager_replica().await;
    let token = w.app.user_token(&w.sub_admin.id);
    // sub_project would be upstream in one and downstream in the other.
    let as_upstream = cpb::RequestConnectionRequest {
        downstream_project_id: w.sub_project2.id.clone(),
        upstream_project_id: w.sub_project.id.clone(),
        features: vec![F::Drawings as i32],
        request_id: String::new(),
    };
    let as_downstream = cpb::RequestConnectionRequest {
        downstream_project_id: w.sub_project.id.clone(),
        upstream_project_id: w.gc_project.id.clone(),
        features: vec![F::Drawings as i32],
        request_id: String::new(),
    };
    let (mut a, mut b) = (w.app.connections(&token), replica.connections(&token));
    let (ra, rb) = tokio::join!(
        a.request_connection(as_upstream),
        b.request_connection(as_downstream)
    );
    assert!(ra.is_ok() ^ rb.is_ok(), "exactly one wins: {ra:?} {rb:?}");
    let loser = ra.err().or(rb.err()).unwrap();
    assert_eq!(loser.code(), Code::FailedPrecondition);
    let r = reason(&loser).unwrap();
    assert!(
        r == "PROJECT_IS_DOWNSTREAM" || r == "PROJECT_IS_UPSTREAM",
        "{r}"
    );
    replica.stop().await;
    w.app.stop().await;
}

async fn c11_approval_follows_the_upstream_company_setting(backend: Backend) {
    let w = world(backend).await;
    // Auto-approve is the default.
    let settings = w
        .connections(&w.gc_admin)
        .get_company_connection_settings(cpb::GetCompanyConnectionSettingsRequest {
            company_id: w.gc.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(settings.approval_mode(), ApprovalMode::AutoApprove);
    assert_eq!(
        status_of(&w.connect(&w.sub_project, &w.gc_project).await),
        S::Active
    );
    // Only company admins change it.
    let err = w
        .connections(&w.gc_member)
        .update_company_connection_settings(cpb::UpdateCompanyConnectionSettingsRequest {
            company_id: w.gc.id.clone(),
            approval_mode: ApprovalMode::RequireReview as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = w
        .connections(&w.sub_admin)
        .update_company_connection_settings(cpb::UpdateCompanyConnectionSettingsRequest {
            company_id: w.gc.id.clone(),
            approval_mode: ApprovalMode::RequireReview as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Review: PENDING until an upstream admin rejects (the downstream may ask again) or approves.
    let pending = w.connect(&w.sub_project2, &w.rev_project).await;
    assert_eq!(status_of(&pending), S::Pending);
    let err = w
        .connections(&w.sub_admin)
        .approve_connection(cpb::ApproveConnectionRequest {
            id: pending.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "the downstream cannot approve its own request"
    );
    let rejected = w
        .connections(&w.rev_admin)
        .reject_connection(cpb::RejectConnectionRequest {
            id: pending.id.clone(),
            message: "Wrong project".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status_of(&rejected), S::Rejected);
    let again = w.connect(&w.sub_project2, &w.rev_project).await;
    assert_eq!(status_of(&again), S::Pending);
    let approved = w
        .connections(&w.rev_admin)
        .approve_connection(cpb::ApproveConnectionRequest {
            id: again.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status_of(&approved), S::Active);
    assert_eq!(approved.approved_by, w.rev_admin.id);
    let twice = w
        .connections(&w.rev_admin)
        .approve_connection(cpb::ApproveConnectionRequest {
            id: again.id.clone(),
        })
        .await;
    refused(twice.map(|r| r.into_inner()), "INVALID_STATE");
    w.app.stop().await;
}

async fn c12_undo_within_five_minutes(backend: Backend) {
    let w = world(backend).await;
    // The initiator undoes an auto-approved connection: it does not count (C8, C14).
    let c = w.connect(&w.sub_project, &w.gc_project).await;
    let err = w
        .connections(&w.gc_admin)
        .undo_connection(cpb::UndoConnectionRequest { id: c.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "neither initiator nor approver"
    );
    let undone = w
        .connections(&w.sub_admin)
        .undo_connection(cpb::UndoConnectionRequest { id: c.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status_of(&undone), S::Undone);
    let again = w.connect(&w.sub_project, &w.gc_project).await;
    assert_eq!(status_of(&again), S::Active);
    // Past five minutes, by the server's clock.
    w.app.clock.advance(Duration::from_secs(5 * 60 + 1));
    let late = w
        .connections(&w.sub_admin)
        .undo_connection(cpb::UndoConnectionRequest {
            id: again.id.clone(),
        })
        .await;
    refused(late.map(|r| r.into_inner()), "UNDO_WINDOW_EXPIRED");
    // The approver takes an approval back: the request is PENDING again.
    let pending = w.connect(&w.sub_project2, &w.rev_project).await;
    let approved = w
        .connections(&w.rev_admin)
        .approve_connection(cpb::ApproveConnectionRequest {
            id: pending.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let back = w
        .connections(&w.rev_admin)
        .undo_connection(cpb::UndoConnectionRequest {
            id: approved.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status_of(&back), S::Pending);
    assert!(back.approved_by.is_empty());
    w.app.stop().await;
}

async fn c13_disconnect_keeps_other_connections(backend: Backend) {
    let w = world(backend).await;
    let a = w.connect(&w.sub_project, &w.gc_project).await;
    let b = w.connect(&w.sub_project2, &w.gc_project).await;
    let err = w.disconnect(&w.gc_admin, &a, "  ").await.unwrap_err();
    assert_eq!(bad_field(&err).as_deref(), Some("reason"));
    let err = w
        .disconnect(&w.sub_viewer, &a, "not mine to end")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let done = w
        .disconnect(&w.gc_admin, &a, "Subcontract ended")
        .await
        .unwrap();
    assert_eq!(status_of(&done), S::Disconnected);
    assert_eq!(done.disconnect_reason, "Subcontract ended");
    assert_eq!(done.disconnected_by, w.gc_admin.id);
    assert_eq!(
        status_of(&w.get(&w.gc_admin, &b).await.unwrap()),
        S::Active,
        "other downstreams untouched"
    );
    // Either side may disconnect.
    let done = w
        .disconnect(&w.sub_admin, &b, "Job finished")
        .await
        .unwrap();
    assert_eq!(status_of(&done), S::Disconnected);
    w.app.stop().await;
}

async fn c14_disconnected_downstream_never_reconnects(backend: Backend) {
    let w = world(backend).await;
    let c = w.connect(&w.sub_project, &w.gc_project).await;
    w.disconnect(&w.sub_admin, &c, "Done").await.unwrap();
    refused(
        w.request(&w.sub_admin, &w.sub_project, &w.gc_project, &[F::Drawings])
            .await,
        "DOWNSTREAM_PREVIOUSLY_DISCONNECTED",
    );
    refused(
        w.request(&w.sub_admin, &w.sub_project, &w.rev_project, &[F::Drawings])
            .await,
        "DOWNSTREAM_PREVIOUSLY_DISCONNECTED",
    );
    w.app.stop().await;
}

async fn c15_connection_does_not_depend_on_its_initiator(backend: Backend) {
    let w = world(backend).await;
    let c = w.connect(&w.sub_project, &w.gc_project).await;
    w.app
        .directory(&w.app.user_token(&w.gc_admin.id))
        .remove_project_member(pb::RemoveProjectMemberRequest {
            project_id: w.gc_project.id.clone(),
            user_id: w.sub_admin.id.clone(),
        })
        .await
        .unwrap();
    let mut op = w.operator();
    set_levels(
        &mut op,
        &w.sub_project,
        &w.sub_admin,
        perms(L::ReadOnly, L::None, L::None, L::None),
    )
    .await;
    let still = w.get(&w.gc_admin, &c).await.unwrap();
    assert_eq!(status_of(&still), S::Active);
    w.app.stop().await;
}

async fn c16_features_are_added_later_under_the_same_checks(backend: Backend) {
    let w = world(backend).await;
    let c = w.connect(&w.sub_project, &w.gc_project).await;
    let add = |features: Vec<F>| {
        let mut client = w.connections(&w.sub_admin);
        let id = c.id.clone();
        async move {
            client
                .add_connection_features(cpb::AddConnectionFeaturesRequest {
                    id,
                    features: features.into_iter().map(|f| f as i32).collect(),
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    refused(add(vec![F::Rfis]).await, "FEATURE_ACCESS_REQUIRED");
    set_levels(
        &mut w.operator(),
        &w.gc_project,
        &w.sub_admin,
        perms(L::None, L::ReadOnly, L::ReadOnly, L::ReadOnly),
    )
    .await;
    let more = add(vec![F::Rfis, F::Drawings]).await.unwrap();
    assert_eq!(more.features, vec![F::Drawings as i32, F::Rfis as i32]);
    assert_eq!(more.upstream_project_id, w.gc_project.id, "roles kept");
    let err = w
        .connections(&w.sub_viewer)
        .add_connection_features(cpb::AddConnectionFeaturesRequest {
            id: c.id.clone(),
            features: vec![F::Submittals as i32],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(reasons(&err).contains(&"NOT_DOWNSTREAM_ADMIN".to_string()));
    w.app.stop().await;
}

async fn c18_connection_manager_readers_see_connections_and_history(backend: Backend) {
    let w = world(backend).await;
    let pending = w.connect(&w.sub_project2, &w.rev_project).await;
    w.connections(&w.rev_admin)
        .approve_connection(cpb::ApproveConnectionRequest {
            id: pending.id.clone(),
        })
        .await
        .unwrap();
    w.disconnect(&w.rev_admin, &pending, "Scope changed")
        .await
        .unwrap();
    let history = w
        .connections(&w.sub_admin)
        .list_connection_history(cpb::ListConnectionHistoryRequest {
            connection_id: pending.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let actions: Vec<A> = history.iter().map(|e| e.action()).collect();
    assert_eq!(actions, vec![A::Requested, A::Approved, A::Disconnected]);
    assert_eq!(history[0].actor_id, w.sub_admin.id);
    assert_eq!(history[1].actor_id, w.rev_admin.id);
    assert_eq!(history[2].reason, "Scope changed");
    assert!(history.iter().all(|e| e.time.is_some()));
    // READ_ONLY on Connection Manager is enough to look.
    let c = w.connect(&w.sub_project, &w.gc_project).await;
    assert!(w.get(&w.sub_viewer, &c).await.is_ok());
    // A GC member with NONE on Connection Manager sees nothing of it.
    let err = w.get(&w.gc_member, &c).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = w
        .connections(&w.gc_member)
        .list_connections(cpb::ListConnectionsRequest {
            project_id: w.gc_project.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    w.app.stop().await;
}

async fn eligibility_reports_every_broken_rule_at_once(backend: Backend) {
    let w = world(backend).await;
    let found = w
        .eligibility(&w.sub_admin, &w.sub_inactive, &w.fed_project, &[])
        .await;
    assert_eq!(
        found,
        vec![
            "NO_FEATURES_SELECTED",
            "PROJECT_INACTIVE",
            "GOVCLOUD_NOT_SUPPORTED"
        ]
    );
    let found = w
        .eligibility(&w.sub_viewer, &w.sub_project, &w.sub_project, &[F::Rfis])
        .await;
    assert_eq!(
        found,
        vec![
            "NOT_DOWNSTREAM_ADMIN",
            "FEATURE_ACCESS_REQUIRED",
            "SAME_PROJECT"
        ]
    );
    // RequestConnection names them all too.
    let err = w
        .request(&w.sub_admin, &w.sub_inactive, &w.euro_project, &[])
        .await
        .unwrap_err();
    assert_eq!(
        reasons(&err),
        vec![
            "NO_FEATURES_SELECTED",
            "PROJECT_INACTIVE",
            "STORAGE_LOCATION_MISMATCH"
        ]
    );
    let ok = w
        .connections(&w.sub_admin)
        .check_connection_eligibility(cpb::CheckConnectionEligibilityRequest {
            downstream_project_id: w.sub_project.id.clone(),
            upstream_project_id: w.rev_project.id.clone(),
            features: vec![F::Drawings as i32],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.eligible);
    assert_eq!(ok.upstream_approval_mode(), ApprovalMode::RequireReview);
    w.app.stop().await;
}

async fn callers_without_rights_learn_nothing(backend: Backend) {
    let w = world(backend).await;
    let c = w.connect(&w.sub_project, &w.gc_project).await;
    let mut anonymous =
        cpb::connection_service_client::ConnectionServiceClient::new(w.app.channel());
    let err = anonymous
        .get_connection(cpb::GetConnectionRequest { id: c.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Another company's user: the connection and the projects do not exist for them.
    assert_eq!(
        w.get(&w.outsider, &c).await.unwrap_err().code(),
        Code::NotFound
    );
    let err = w
        .request(&w.outsider, &w.sub_project2, &w.gc_project, &[F::Drawings])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = w.disconnect(&w.outsider, &c, "mischief").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = w
        .connections(&w.outsider)
        .get_company_connection_settings(cpb::GetCompanyConnectionSettingsRequest {
            company_id: w.gc.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // A member without Connection Manager admin: told plainly.
    let pending = w.connect(&w.sub_project2, &w.rev_project).await;
    let mut op = w.operator();
    member(
        &mut op,
        &w.rev_project,
        &w.sub_viewer,
        perms(L::ReadOnly, L::ReadOnly, L::None, L::None),
    )
    .await;
    let err = w
        .connections(&w.sub_viewer)
        .approve_connection(cpb::ApproveConnectionRequest {
            id: pending.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = w
        .connections(&w.sub_admin)
        .get_connection(cpb::GetConnectionRequest {
            id: "con_nope!".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(&err).as_deref(), Some("id"));
    w.app.stop().await;
}

async fn connectable_projects_are_grouped_by_company(backend: Backend) {
    let w = world(backend).await;
    w.connect(&w.sub_project, &w.gc_project).await;
    let answer = w
        .connections(&w.sub_admin)
        .list_connectable_projects(cpb::ListConnectableProjectsRequest {
            downstream_project_id: w.sub_project2.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .companies;
    let names: Vec<(String, bool, Vec<String>)> = answer
        .iter()
        .map(|g| {
            let mut ids: Vec<String> = g.projects.iter().map(|p| p.id.clone()).collect();
            ids.sort();
            (
                g.company.as_ref().unwrap().id.clone(),
                g.current_company,
                ids,
            )
        })
        .collect();
    // Own company first (sub_project is downstream now, sub_project2 is the one connecting,
    // sub_inactive is inactive: nothing left), GovCloud left out.
    assert!(
        names
            .iter()
            .all(|(id, _, _)| *id != w.fed_project.company_id)
    );
    assert!(
        names.iter().all(
            |(_, _, ids)| !ids.contains(&w.sub_project.id) && !ids.contains(&w.sub_inactive.id)
        )
    );
    let gc = names.iter().find(|(id, _, _)| *id == w.gc.id).unwrap();
    assert_eq!(gc.2, vec![w.gc_project.id.clone()], "member projects only");
    assert!(names.iter().any(|(id, _, _)| *id == w.reviewer.id));
    assert!(
        names
            .iter()
            .any(|(id, _, _)| *id == w.euro_project.company_id)
    );
    let own = w
        .connections(&w.sub_admin)
        .list_connectable_projects(cpb::ListConnectableProjectsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .companies;
    assert!(own[0].current_company);
    assert_eq!(own[0].company.as_ref().unwrap().id, w.sub.id);
    w.app.stop().await;
}

async fn end_to_end_request_approve_extend_disconnect(backend: Backend) {
    let w = world(backend).await;
    let c = w.connect(&w.sub_project, &w.rev_project).await;
    assert_eq!(status_of(&c), S::Pending);
    let listed = w
        .connections(&w.rev_admin)
        .list_connections(cpb::ListConnectionsRequest {
            project_id: w.rev_project.id.clone(),
            statuses: vec![S::Pending as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .connections;
    assert_eq!(
        listed.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        vec![c.id.clone()]
    );
    let active = w
        .connections(&w.rev_admin)
        .approve_connection(cpb::ApproveConnectionRequest { id: c.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status_of(&active), S::Active);
    set_levels(
        &mut w.operator(),
        &w.rev_project,
        &w.sub_admin,
        perms(L::None, L::ReadOnly, L::None, L::ReadOnly),
    )
    .await;
    let extended = w
        .connections(&w.sub_admin)
        .add_connection_features(cpb::AddConnectionFeaturesRequest {
            id: c.id.clone(),
            features: vec![F::Submittals as i32],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        extended.features,
        vec![F::Drawings as i32, F::Submittals as i32]
    );
    let gone = w
        .disconnect(&w.sub_admin, &c, "Contract closed")
        .await
        .unwrap();
    assert_eq!(status_of(&gone), S::Disconnected);
    for up in [&w.rev_project, &w.gc_project] {
        refused(
            w.request(&w.sub_admin, &w.sub_project, up, &[F::Drawings])
                .await,
            "DOWNSTREAM_PREVIOUSLY_DISCONNECTED",
        );
    }
    w.app.stop().await;
}

/// Collects connection events from the bus.
struct Collect(std::sync::Mutex<Vec<Envelope>>);

#[async_trait]
impl inbox::InboxHandler for Collect {
    async fn handle(&self, _tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

async fn every_transition_is_published_with_what_consumers_need(backend: Backend) {
    let w = world(backend).await;
    let db = w
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
        db,
        SubscriptionSpec {
            durable: "listener".into(),
            context: "connections".into(),
            retry: RetryPolicy::default(),
        },
        seen.clone(),
    )
    .await
    .unwrap();
    let c = w.connect(&w.sub_project, &w.rev_project).await;
    w.connections(&w.rev_admin)
        .approve_connection(cpb::ApproveConnectionRequest { id: c.id.clone() })
        .await
        .unwrap();
    w.disconnect(&w.rev_admin, &c, "Over").await.unwrap();
    let kinds = [
        "connectability.connections.v1.ConnectionRequested",
        "connectability.connections.v1.ConnectionApproved",
        "connectability.connections.v1.ConnectionActivated",
        "connectability.connections.v1.ConnectionDisconnected",
    ];
    let events = eventually("the four events", Duration::from_secs(20), || async {
        let got = seen.0.lock().unwrap().clone();
        kinds
            .iter()
            .all(|k| got.iter().any(|e| e.event_type == *k))
            .then_some(got)
    })
    .await;
    let requested: cpb::ConnectionRequested = connectability_platform::events::decode(
        events.iter().find(|e| e.event_type == kinds[0]).unwrap(),
    )
    .unwrap();
    assert!(requested.requires_review);
    assert_eq!(requested.actor_id, w.sub_admin.id);
    let disconnected: cpb::ConnectionDisconnected = connectability_platform::events::decode(
        events.iter().find(|e| e.event_type == kinds[3]).unwrap(),
    )
    .unwrap();
    let conn = disconnected.connection.unwrap();
    assert_eq!(
        (
            conn.upstream_project_id.as_str(),
            conn.upstream_company_id.as_str()
        ),
        (w.rev_project.id.as_str(), w.reviewer.id.as_str())
    );
    assert_eq!(
        (
            conn.downstream_project_id.as_str(),
            conn.downstream_company_id.as_str()
        ),
        (w.sub_project.id.as_str(), w.sub.id.as_str())
    );
    assert_eq!(conn.features, vec![F::Drawings as i32]);
    assert_eq!(disconnected.reason, "Over");
    assert_eq!(disconnected.actor_id, w.rev_admin.id);
    sub.stop().await;
    w.app.stop().await;
}

on_both_backends!(
    c01_connection_needs_at_least_one_feature,
    c02_only_downstream_connection_manager_admins_initiate,
    c03_feature_access_is_needed_in_both_projects,
    c04_both_projects_must_be_active,
    c05_companies_must_share_the_storage_location,
    c06_govcloud_companies_cannot_take_part,
    c07_no_self_connection_but_same_company_may_connect,
    c08_downstream_has_one_upstream,
    c08_concurrent_requests_never_both_succeed,
    c09_upstream_serves_many_downstreams,
    c10_roles_are_fixed,
    c10_concurrent_role_conflicts_never_both_succeed,
    c11_approval_follows_the_upstream_company_setting,
    c12_undo_within_five_minutes,
    c13_disconnect_keeps_other_connections,
    c14_disconnected_downstream_never_reconnects,
    c15_connection_does_not_depend_on_its_initiator,
    c16_features_are_added_later_under_the_same_checks,
    c18_connection_manager_readers_see_connections_and_history,
    eligibility_reports_every_broken_rule_at_once,
    callers_without_rights_learn_nothing,
    connectable_projects_are_grouped_by_company,
    end_to_end_request_approve_extend_disconnect,
    every_transition_is_published_with_what_consumers_need,
);
