//! The directory through gRPC, as a client calls it (Y1-Y3, auth, bad input, events).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use connectability_auth::Claims;
use connectability_events::{Envelope, RetryPolicy, SubscriptionSpec};
use connectability_platform::errors::{bad_field, reason};
use connectability_proto::directory::v1::{self as pb, PermissionLevel as L};
use connectability_store::{ServiceMigrations, Tx, inbox};
use connectability_testkit::{Backend, Service, TestApp, eventually};
use tonic::{Code, Request};

type Client =
    pb::directory_service_client::DirectoryServiceClient<connectability_testkit::AuthedChannel>;

/// A general contractor and a subcontractor, each with an admin and a plain user, and a
/// project each; the sub's admin is a member of the GC's project.
struct World {
    app: TestApp,
    gc: pb::Company,
    sub: pb::Company,
    gc_admin: pb::User,
    gc_user: pb::User,
    sub_admin: pb::User,
    gc_project: pb::Project,
    gc_hidden_project: pb::Project,
    sub_project: pb::Project,
}

impl World {
    fn as_user(&self, user: &pb::User) -> Client {
        self.app.directory(&self.app.user_token(&user.id))
    }
}

fn perms(cm: L, drawings: L, rfis: L, submittals: L) -> pb::ToolPermissions {
    pb::ToolPermissions {
        connection_manager: cm as i32,
        drawings: drawings as i32,
        rfis: rfis as i32,
        submittals: submittals as i32,
    }
}

async fn company(op: &mut Client, name: &str, fsl: &str, govcloud: bool) -> pb::Company {
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

async fn user(op: &mut Client, company: &pb::Company, name: &str, admin: bool) -> pb::User {
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

async fn project(client: &mut Client, company: &pb::Company, name: &str) -> pb::Project {
    client
        .create_project(pb::CreateProjectRequest {
            company_id: company.id.clone(),
            name: name.into(),
            active: None,
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn add_member(
    client: &mut Client,
    project: &pb::Project,
    user: &pb::User,
    p: pb::ToolPermissions,
) -> pb::ProjectMember {
    client
        .add_project_member(pb::AddProjectMemberRequest {
            project_id: project.id.clone(),
            user_id: user.id.clone(),
            permissions: Some(p),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn world(backend: Backend) -> World {
    let app = TestApp::spawn(backend, &[Service::Directory]).await;
    let mut op = app.directory_as_operator();
    let gc = company(&mut op, "Summit GC", "us-east", false).await;
    let sub = company(&mut op, "Ridgeline Electric", "us-east", false).await;
    let gc_admin = user(&mut op, &gc, "Gina Torres", true).await;
    let gc_user = user(&mut op, &gc, "Sam Okafor", false).await;
    let sub_admin = user(&mut op, &sub, "Raj Patel", true).await;
    let mut gc_client = app.directory(&app.user_token(&gc_admin.id));
    let gc_project = project(&mut gc_client, &gc, "Harbor Tower").await;
    let gc_hidden_project = project(&mut gc_client, &gc, "Secret Bid").await;
    add_member(
        &mut gc_client,
        &gc_project,
        &gc_user,
        perms(L::ReadOnly, L::Standard, L::None, L::None),
    )
    .await;
    add_member(
        &mut gc_client,
        &gc_project,
        &sub_admin,
        perms(L::None, L::ReadOnly, L::ReadOnly, L::ReadOnly),
    )
    .await;
    let mut sub_client = app.directory(&app.user_token(&sub_admin.id));
    let sub_project = project(&mut sub_client, &sub, "Harbor Tower - Electrical").await;
    World {
        app,
        gc,
        sub,
        gc_admin,
        gc_user,
        sub_admin,
        gc_project,
        gc_hidden_project,
        sub_project,
    }
}

fn ids(projects: &[pb::Project]) -> Vec<String> {
    let mut v: Vec<String> = projects.iter().map(|p| p.id.clone()).collect();
    v.sort();
    v
}

async fn y01_company_has_name_storage_location_and_govcloud_flag(backend: Backend) {
    let w = world(backend).await;
    let mut op = w.app.directory_as_operator();
    let fed = company(&mut op, "Federal Works", "us-gov-west", true).await;
    let got = op
        .get_company(pb::GetCompanyRequest { id: fed.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, "Federal Works");
    assert_eq!(got.storage_location, "us-gov-west");
    assert!(got.govcloud);
    assert!(!w.gc.govcloud);
    assert_eq!(w.gc.storage_location, "us-east");
    // A project belongs to one company and is active until made inactive.
    assert_eq!(w.gc_project.company_id, w.gc.id);
    assert!(w.gc_project.active);
    let mut admin = w.as_user(&w.gc_admin);
    let updated = admin
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
        .unwrap()
        .into_inner();
    assert!(!updated.active);
    assert_eq!(
        updated.name, "Harbor Tower",
        "fields outside the mask are kept"
    );
    let got = admin
        .get_project(pb::GetProjectRequest {
            id: w.gc_project.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!got.active);
    w.app.stop().await;
}

async fn y02_company_admins_manage_the_project_directory(backend: Backend) {
    let w = world(backend).await;
    let mut admin = w.as_user(&w.gc_admin);
    let members = admin
        .list_project_members(pb::ListProjectMembersRequest {
            project_id: w.gc_project.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    let sub_entry = members
        .iter()
        .find(|m| m.user_id == w.sub_admin.id)
        .expect("sub admin listed");
    assert_eq!(
        sub_entry.permissions,
        Some(perms(L::None, L::ReadOnly, L::ReadOnly, L::ReadOnly))
    );

    // UNSPECIFIED keeps a level; set ones change.
    let updated = admin
        .update_project_member(pb::UpdateProjectMemberRequest {
            project_id: w.gc_project.id.clone(),
            user_id: w.sub_admin.id.clone(),
            permissions: Some(pb::ToolPermissions {
                drawings: L::Admin as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        updated.permissions,
        Some(perms(L::None, L::Admin, L::ReadOnly, L::ReadOnly))
    );

    // A member who is not a company admin may look but not manage.
    let mut plain = w.as_user(&w.gc_user);
    let denied = plain
        .add_project_member(pb::AddProjectMemberRequest {
            project_id: w.gc_project.id.clone(),
            user_id: w.gc_user.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        plain
            .list_project_members(pb::ListProjectMembersRequest {
                project_id: w.gc_project.id.clone(),
                ..Default::default()
            })
            .await
            .is_ok()
    );

    // Another company's admin who is a member still cannot manage it.
    let mut sub = w.as_user(&w.sub_admin);
    let denied = sub
        .remove_project_member(pb::RemoveProjectMemberRequest {
            project_id: w.gc_project.id.clone(),
            user_id: w.gc_user.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    admin
        .remove_project_member(pb::RemoveProjectMemberRequest {
            project_id: w.gc_project.id.clone(),
            user_id: w.sub_admin.id.clone(),
        })
        .await
        .unwrap();
    let after = admin
        .list_project_members(pb::ListProjectMembersRequest {
            project_id: w.gc_project.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert!(after.iter().all(|m| m.user_id != w.sub_admin.id));
    // Removed from the directory, the project disappears for them (Y3).
    let gone = sub
        .get_project(pb::GetProjectRequest {
            id: w.gc_project.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    w.app.stop().await;
}

async fn y03_user_sees_only_projects_they_are_member_of(backend: Backend) {
    let w = world(backend).await;
    // The sub's admin: their own company's project (as company admin) and the GC project they joined.
    let mut sub = w.as_user(&w.sub_admin);
    let listed = sub
        .list_projects(pb::ListProjectsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .projects;
    assert_eq!(
        ids(&listed),
        ids(&[w.gc_project.clone(), w.sub_project.clone()])
    );
    // The GC's plain user: only the project they are a member of.
    let mut plain = w.as_user(&w.gc_user);
    let listed = plain
        .list_projects(pb::ListProjectsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .projects;
    assert_eq!(ids(&listed), vec![w.gc_project.id.clone()]);
    // The GC's company admin: every project of the company, member or not.
    let mut admin = w.as_user(&w.gc_admin);
    let listed = admin
        .list_projects(pb::ListProjectsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .projects;
    assert_eq!(
        ids(&listed),
        ids(&[w.gc_project.clone(), w.gc_hidden_project.clone()])
    );
    // Companies: own, plus those whose projects they are in.
    let companies = sub
        .list_companies(pb::ListCompaniesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .companies;
    let mut company_ids: Vec<_> = companies.iter().map(|c| c.id.clone()).collect();
    company_ids.sort();
    let mut expected = vec![w.gc.id.clone(), w.sub.id.clone()];
    expected.sort();
    assert_eq!(company_ids, expected);
    w.app.stop().await;
}

async fn y03_outsider_gets_not_found(backend: Backend) {
    let w = world(backend).await;
    let mut sub = w.as_user(&w.sub_admin);
    let hidden = sub
        .get_project(pb::GetProjectRequest {
            id: w.gc_hidden_project.id.clone(),
        })
        .await
        .unwrap_err();
    let missing = sub
        .get_project(pb::GetProjectRequest {
            id: "prj_doesnotexist".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(missing.code(), Code::NotFound);
    // The same answer shape: nothing hints that the hidden one exists.
    assert_eq!(
        hidden.message().replace(&w.gc_hidden_project.id, "X"),
        missing.message().replace("prj_doesnotexist", "X")
    );
    let members = sub
        .list_project_members(pb::ListProjectMembersRequest {
            project_id: w.gc_hidden_project.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(members.code(), Code::NotFound);
    let update = sub
        .update_project(pb::UpdateProjectRequest {
            project: Some(pb::Project {
                id: w.gc_hidden_project.id.clone(),
                name: "x".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(update.code(), Code::NotFound);
    // A plain GC user cannot see a colleague-free company project either.
    let mut plain = w.as_user(&w.gc_user);
    let err = plain
        .get_project(pb::GetProjectRequest {
            id: w.gc_hidden_project.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let other_company = plain
        .get_company(pb::GetCompanyRequest {
            id: w.sub.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(other_company.code(), Code::NotFound);
    w.app.stop().await;
}

async fn calls_without_a_valid_token_are_unauthenticated(backend: Backend) {
    let w = world(backend).await;
    let mut anonymous = pb::directory_service_client::DirectoryServiceClient::new(w.app.channel());
    let err = anonymous
        .list_projects(pb::ListProjectsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let forged =
        connectability_auth::Issuer::hs256(b"not the server's secret").user(&w.gc_admin.id);
    let err = w
        .app
        .directory(&forged)
        .list_projects(pb::ListProjectsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let expired = w.app.issuer.mint_claims(&Claims {
        sub: w.gc_admin.id.clone(),
        iat: 1,
        exp: 1000,
        nbf: None,
        roles: vec![],
    });
    let err = w
        .app
        .directory(&expired)
        .list_projects(pb::ListProjectsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let mut garbage = pb::directory_service_client::DirectoryServiceClient::new(w.app.channel());
    let mut req = Request::new(pb::ListProjectsRequest::default());
    req.metadata_mut()
        .insert("authorization", "Bearer not-a-jwt".parse().unwrap());
    assert_eq!(
        garbage.list_projects(req).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let unknown_user = w
        .app
        .directory(&w.app.user_token("usr_nobody"))
        .list_projects(pb::ListProjectsRequest::default())
        .await;
    assert_eq!(unknown_user.unwrap_err().code(), Code::Unauthenticated);
    w.app.stop().await;
}

async fn bad_input_is_invalid_argument_naming_the_field(backend: Backend) {
    let w = world(backend).await;
    let mut op = w.app.directory_as_operator();
    let err = op
        .create_company(pb::CreateCompanyRequest {
            name: "  ".into(),
            storage_location: "us-east".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_field(&err).as_deref(), Some("name"));
    let err = op
        .create_company(pb::CreateCompanyRequest {
            name: "X".into(),
            storage_location: "US East!".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(&err).as_deref(), Some("storage_location"));

    let mut admin = w.as_user(&w.gc_admin);
    let err = admin
        .get_project(pb::GetProjectRequest {
            id: "not-an-id".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_field(&err).as_deref(), Some("id"));
    let err = admin
        .add_project_member(pb::AddProjectMemberRequest {
            project_id: w.gc_project.id.clone(),
            user_id: w.gc_admin.id.clone(),
            permissions: Some(pb::ToolPermissions {
                drawings: 99,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_field(&err).as_deref(), Some("permissions.drawings"));
    let err = admin
        .create_user(pb::CreateUserRequest {
            company_id: w.gc.id.clone(),
            display_name: "Ann".into(),
            email: "not-an-email".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(&err).as_deref(), Some("email"));
    let err = admin
        .update_project(pb::UpdateProjectRequest {
            project: Some(pb::Project {
                id: w.gc_project.id.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["company_id".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(&err).as_deref(), Some("update_mask"));
    let err = admin
        .list_projects(pb::ListProjectsRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(&err).as_deref(), Some("page_size"));
    let err = admin
        .list_projects(pb::ListProjectsRequest {
            page_token: "bogus".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(&err).as_deref(), Some("page_token"));
    // Nothing half-written: the bad member call left the directory as it was.
    let members = admin
        .list_project_members(pb::ListProjectMembersRequest {
            project_id: w.gc_project.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 2);
    w.app.stop().await;
}

async fn only_operators_create_companies_and_admins_manage_their_own(backend: Backend) {
    let w = world(backend).await;
    let mut admin = w.as_user(&w.gc_admin);
    let err = admin
        .create_company(pb::CreateCompanyRequest {
            name: "Mine".into(),
            storage_location: "us-east".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // The sub's admin can see the GC company (member of its project) but not manage it.
    let mut sub = w.as_user(&w.sub_admin);
    let err = sub
        .create_project(pb::CreateProjectRequest {
            company_id: w.gc.id.clone(),
            name: "Nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Company admin of someone else's employee: refused with a reason.
    let err = admin
        .set_company_admin(pb::SetCompanyAdminRequest {
            company_id: w.gc.id.clone(),
            user_id: w.sub_admin.id.clone(),
            admin: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err).as_deref(), Some("USER_NOT_IN_COMPANY"));
    // A company admin promotes a colleague, who then sees every company project.
    admin
        .set_company_admin(pb::SetCompanyAdminRequest {
            company_id: w.gc.id.clone(),
            user_id: w.gc_user.id.clone(),
            admin: true,
        })
        .await
        .unwrap();
    let listed = w
        .as_user(&w.gc_user)
        .list_projects(pb::ListProjectsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .projects;
    assert_eq!(listed.len(), 2);
    w.app.stop().await;
}

async fn project_access_answers_services_and_the_user_themselves(backend: Backend) {
    let w = world(backend).await;
    let mut svc = w.app.directory(&w.app.issuer.service("connection-manager"));
    let access = svc
        .get_project_access(pb::GetProjectAccessRequest {
            project_id: w.gc_project.id.clone(),
            user_id: w.sub_admin.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(access.member);
    assert!(
        !access.company_admin,
        "admin of another company, not of the project's"
    );
    assert_eq!(access.project_company_id, w.gc.id);
    assert_eq!(access.user_company_id, w.sub.id);
    assert!(access.project_active);
    assert_eq!(
        access.permissions,
        Some(perms(L::None, L::ReadOnly, L::ReadOnly, L::ReadOnly))
    );
    let own = svc
        .get_project_access(pb::GetProjectAccessRequest {
            project_id: w.sub_project.id.clone(),
            user_id: w.sub_admin.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(own.company_admin);
    assert!(!own.member);
    assert_eq!(
        own.permissions,
        Some(perms(L::None, L::None, L::None, L::None))
    );
    // Users may ask about themselves only.
    let mut plain = w.as_user(&w.gc_user);
    let err = plain
        .get_project_access(pb::GetProjectAccessRequest {
            project_id: w.gc_project.id.clone(),
            user_id: w.sub_admin.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        plain
            .get_project_access(pb::GetProjectAccessRequest {
                project_id: w.gc_project.id.clone(),
                user_id: w.gc_user.id.clone()
            })
            .await
            .is_ok()
    );
    w.app.stop().await;
}

async fn retried_create_with_request_id_returns_the_first_result(backend: Backend) {
    let w = world(backend).await;
    let mut op = w.app.directory_as_operator();
    let req = pb::CreateCompanyRequest {
        name: "Retry Co".into(),
        storage_location: "us-east".into(),
        govcloud: false,
        request_id: "create-retry-co-1".into(),
    };
    let first = op.create_company(req.clone()).await.unwrap().into_inner();
    let second = op.create_company(req).await.unwrap().into_inner();
    assert_eq!(first, second);
    let all = op
        .list_companies(pb::ListCompaniesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.companies
            .iter()
            .filter(|c| c.name == "Retry Co")
            .count(),
        1
    );
    w.app.stop().await;
}

async fn lists_page_with_tokens_in_stable_order(backend: Backend) {
    let w = world(backend).await;
    let mut admin = w.as_user(&w.gc_admin);
    for i in 0..3 {
        project(&mut admin, &w.gc, &format!("Extra {i}")).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_projects(pb::ListProjectsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.projects.len() <= 2);
        seen.extend(page.projects.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "ordered by id, no repeats");
    assert_eq!(seen.len(), 5);
    w.app.stop().await;
}

/// Records directory events it receives into memory.
struct Collect(std::sync::Mutex<Vec<Envelope>>);

#[async_trait]
impl inbox::InboxHandler for Collect {
    async fn handle(&self, _tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

async fn directory_changes_are_published_as_events(backend: Backend) {
    let app = TestApp::spawn(backend, &[Service::Directory]).await;
    let consumer_db = app
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
    let collected = Arc::new(Collect(Default::default()));
    let sub = inbox::subscribe(
        app.env.bus.as_ref(),
        consumer_db,
        SubscriptionSpec {
            durable: "listener".into(),
            context: "directory".into(),
            retry: RetryPolicy::default(),
        },
        collected.clone(),
    )
    .await
    .unwrap();
    let mut op = app.directory_as_operator();
    let c = company(&mut op, "Eventful", "us-east", false).await;
    let p = project(&mut op, &c, "Observed").await;
    let event = eventually(
        "ProjectCreated on the bus",
        Duration::from_secs(20),
        || async {
            collected
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|e| e.event_type == "connectability.directory.v1.ProjectCreated")
                .cloned()
        },
    )
    .await;
    let payload: pb::ProjectCreated = connectability_platform::events::decode(&event).unwrap();
    assert_eq!(payload.project.unwrap().id, p.id);
    assert_eq!(payload.actor_id, "operator");
    assert_eq!(event.subject, format!("projects/{}", p.id));
    assert_eq!(event.source, "connectability/directory");
    sub.stop().await;
    app.stop().await;
}

on_both_backends!(
    y01_company_has_name_storage_location_and_govcloud_flag,
    y02_company_admins_manage_the_project_directory,
    y03_user_sees_only_projects_they_are_member_of,
    y03_outsider_gets_not_found,
    calls_without_a_valid_token_are_unauthenticated,
    bad_input_is_invalid_argument_naming_the_field,
    only_operators_create_companies_and_admins_manage_their_own,
    project_access_answers_services_and_the_user_themselves,
    retried_create_with_request_id_returns_the_first_result,
    lists_page_with_tokens_in_stable_order,
    directory_changes_are_published_as_events,
);
