//! The gRPC layer: parse the request, check who may do it, run the change in one
//! transaction with its events, answer. Rules live in `domain`, SQL in `db`.

use connectability_auth::Caller;
use connectability_events::Envelope;
use connectability_platform::{
    errors::{failed_precondition, internal, invalid_argument, not_found, permission_denied},
    paging::PageRequest,
    time::timestamp,
};
use connectability_proto::directory::v1::{self as pb, directory_service_server::DirectoryService};
use connectability_store::{Db, Tx, now_ms, outbox};
use sqlx::AnyConnection;
use tonic::{Request, Response, Status};

use crate::{
    db::{self, ProjectScope},
    domain::{self, COMPANY, Id, PROJECT, Principal, ToolLevels, USER},
    events,
};

mod checks;
mod usecases;

use checks::*;

#[derive(Clone)]
pub struct DirectoryApi {
    db: Db,
    relay: outbox::RelayWaker,
}

#[tonic::async_trait]
impl DirectoryService for DirectoryApi {
    async fn create_company(
        &self,
        req: Request<pb::CreateCompanyRequest>,
    ) -> Result<Response<pb::Company>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let name = domain::parse_name("name", &r.name)?;
        let storage_location = domain::parse_storage_location(&r.storage_location)?;
        let request_id = domain::parse_request_id(&r.request_id)?;
        let mut tx = self.begin().await?;
        let who = self.principal(&mut tx, &caller).await?;
        if !matches!(who, Principal::Operator(_)) {
            return Err(permission_denied("only operators create companies"));
        }
        let scope = scope("CreateCompany", &who);
        if let Some(prev) = self.replayed(&mut tx, &scope, &request_id).await? {
            return Ok(Response::new(prev));
        }
        let company = pb::Company {
            id: Id::generate(COMPANY).to_string(),
            name,
            storage_location,
            govcloud: r.govcloud,
            create_time: Some(timestamp(now_ms())),
        };
        db::insert_company(&mut tx, &company)
            .await
            .map_err(db_err)?;
        let events = [events::company_created(&company, who.actor_id())];
        self.commit(
            tx,
            request_id.as_deref().map(|r| (scope.as_str(), r)),
            &company,
            &events,
        )
        .await?;
        Ok(Response::new(company))
    }

    async fn get_company(
        &self,
        req: Request<pb::GetCompanyRequest>,
    ) -> Result<Response<pb::Company>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(COMPANY, "id", &req.get_ref().id)?;
        let mut conn = self.read().await?;
        let who = self.principal(&mut conn, &caller).await?;
        Ok(Response::new(
            self.visible_company(&mut conn, &who, &id).await?,
        ))
    }

    async fn list_companies(
        &self,
        req: Request<pb::ListCompaniesRequest>,
    ) -> Result<Response<pb::ListCompaniesResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let page = PageRequest::parse(req.get_ref().page_size, &req.get_ref().page_token)?;
        let mut conn = self.read().await?;
        let who = self.principal(&mut conn, &caller).await?;
        let viewer = match &who {
            Principal::User { id, company_id, .. } => Some((id.as_str(), company_id.as_str())),
            _ => None,
        };
        let mut companies = db::list_companies(&mut conn, viewer, &page.after, page.fetch_limit())
            .await
            .map_err(db_err)?;
        let next_page_token = page.finish(&mut companies, |c| &c.id);
        Ok(Response::new(pb::ListCompaniesResponse {
            companies,
            next_page_token,
        }))
    }

    async fn set_company_admin(
        &self,
        req: Request<pb::SetCompanyAdminRequest>,
    ) -> Result<Response<pb::CompanyAdmin>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let company_id = Id::parse(COMPANY, "company_id", &r.company_id)?;
        let user_id = Id::parse(USER, "user_id", &r.user_id)?;
        let mut tx = self.begin().await?;
        let who = self.principal(&mut tx, &caller).await?;
        let company = self.managed_company(&mut tx, &who, &company_id).await?;
        let user = db::get_user(&mut tx, user_id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("user", user_id.as_str()))?;
        if user.company_id != company.id {
            return Err(failed_precondition(
                domain::reason::USER_NOT_IN_COMPANY,
                format!(
                    "user `{}` works for `{}`, not `{}`",
                    user.id, user.company_id, company.id
                ),
            ));
        }
        db::set_company_admin(&mut tx, &company.id, &user.id, r.admin)
            .await
            .map_err(db_err)?;
        let admin = pb::CompanyAdmin {
            company_id: company.id,
            user_id: user.id,
            admin: r.admin,
        };
        let events = [events::company_admin_changed(&admin, who.actor_id())];
        self.commit(tx, None, &admin, &events).await?;
        Ok(Response::new(admin))
    }

    async fn create_project(
        &self,
        req: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let company_id = Id::parse(COMPANY, "company_id", &r.company_id)?;
        let name = domain::parse_name("name", &r.name)?;
        let request_id = domain::parse_request_id(&r.request_id)?;
        let mut tx = self.begin().await?;
        let who = self.principal(&mut tx, &caller).await?;
        let company = self.managed_company(&mut tx, &who, &company_id).await?;
        let scope = scope("CreateProject", &who);
        if let Some(prev) = self.replayed(&mut tx, &scope, &request_id).await? {
            return Ok(Response::new(prev));
        }
        let now = Some(timestamp(now_ms()));
        let project = pb::Project {
            id: Id::generate(PROJECT).to_string(),
            company_id: company.id,
            name,
            active: r.active.unwrap_or(true),
            create_time: now,
            update_time: now,
        };
        db::insert_project(&mut tx, &project)
            .await
            .map_err(db_err)?;
        let events = [events::project_created(&project, who.actor_id())];
        self.commit(
            tx,
            request_id.as_deref().map(|r| (scope.as_str(), r)),
            &project,
            &events,
        )
        .await?;
        Ok(Response::new(project))
    }

    async fn get_project(
        &self,
        req: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(PROJECT, "id", &req.get_ref().id)?;
        let mut conn = self.read().await?;
        let who = self.principal(&mut conn, &caller).await?;
        Ok(Response::new(
            self.visible_project(&mut conn, &who, &id).await?,
        ))
    }

    async fn list_projects(
        &self,
        req: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let company_filter = if r.company_id.is_empty() {
            String::new()
        } else {
            Id::parse(COMPANY, "company_id", &r.company_id)?.to_string()
        };
        let mut conn = self.read().await?;
        let who = self.principal(&mut conn, &caller).await?;
        let scope = match &who {
            p if p.sees_everything() => ProjectScope::All,
            Principal::User {
                id,
                company_id,
                company_admin,
            } => ProjectScope::VisibleTo {
                user_id: id,
                admin_of: (*company_admin && !r.member_only).then_some(company_id.as_str()),
            },
            _ => unreachable!("operators and services see everything"),
        };
        let mut projects = db::list_projects(
            &mut conn,
            scope,
            &company_filter,
            &page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(db_err)?;
        let next_page_token = page.finish(&mut projects, |p| &p.id);
        Ok(Response::new(pb::ListProjectsResponse {
            projects,
            next_page_token,
        }))
    }

    async fn update_project(
        &self,
        req: Request<pb::UpdateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let input = r
            .project
            .ok_or_else(|| invalid_argument("project", "is required"))?;
        let id = Id::parse(PROJECT, "project.id", &input.id)?;
        let paths = connectability_platform::requests::field_mask(
            r.update_mask,
            &["name", "active"],
            connectability_platform::requests::EmptyMask::AllFields,
        )?;
        let (set_name, set_active) = (paths.contains(&"name"), paths.contains(&"active"));
        let new_name = if set_name {
            Some(domain::parse_name("project.name", &input.name)?)
        } else {
            None
        };
        let mut tx = self.begin().await?;
        let who = self.principal(&mut tx, &caller).await?;
        let mut project = self.managed_project(&mut tx, &who, &id).await?;
        if let Some(name) = new_name {
            project.name = name;
        }
        if set_active {
            project.active = input.active;
        }
        project.update_time = Some(timestamp(now_ms()));
        db::update_project(&mut tx, &project)
            .await
            .map_err(db_err)?;
        let events = [events::project_updated(&project, who.actor_id())];
        self.commit(tx, None, &project, &events).await?;
        Ok(Response::new(project))
    }

    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let company_id = Id::parse(COMPANY, "company_id", &r.company_id)?;
        let display_name = domain::parse_name("display_name", &r.display_name)?;
        let email = domain::parse_email(&r.email)?;
        let request_id = domain::parse_request_id(&r.request_id)?;
        let mut tx = self.begin().await?;
        let who = self.principal(&mut tx, &caller).await?;
        let company = self.managed_company(&mut tx, &who, &company_id).await?;
        let scope = scope("CreateUser", &who);
        if let Some(prev) = self.replayed(&mut tx, &scope, &request_id).await? {
            return Ok(Response::new(prev));
        }
        if db::email_taken(&mut tx, &email).await.map_err(db_err)? {
            return Err(Status::already_exists(format!(
                "a user with email `{email}` exists"
            )));
        }
        let user = pb::User {
            id: Id::generate(USER).to_string(),
            company_id: company.id,
            display_name,
            email,
            create_time: Some(timestamp(now_ms())),
        };
        db::insert_user(&mut tx, &user).await.map_err(db_err)?;
        let events = [events::user_created(&user, who.actor_id())];
        self.commit(
            tx,
            request_id.as_deref().map(|r| (scope.as_str(), r)),
            &user,
            &events,
        )
        .await?;
        Ok(Response::new(user))
    }

    async fn get_user(
        &self,
        req: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(USER, "id", &req.get_ref().id)?;
        let mut conn = self.read().await?;
        let who = self.principal(&mut conn, &caller).await?;
        let user = db::get_user(&mut conn, id.as_str()).await.map_err(db_err)?;
        let visible = match (&user, &who) {
            (Some(_), p) if p.sees_everything() => true,
            (Some(u), Principal::User { company_id, .. }) => u.company_id == *company_id,
            _ => false,
        };
        match user {
            Some(u) if visible => Ok(Response::new(u)),
            _ => Err(not_found("user", id.as_str())),
        }
    }

    async fn add_project_member(
        &self,
        req: Request<pb::AddProjectMemberRequest>,
    ) -> Result<Response<pb::ProjectMember>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(
            self.add_member(&caller, req.into_inner()).await?,
        ))
    }

    async fn update_project_member(
        &self,
        req: Request<pb::UpdateProjectMemberRequest>,
    ) -> Result<Response<pb::ProjectMember>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project_id = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let user_id = Id::parse(USER, "user_id", &r.user_id)?;
        let mut tx = self.begin().await?;
        let who = self.principal(&mut tx, &caller).await?;
        let project = self.managed_project(&mut tx, &who, &project_id).await?;
        let mut member = db::get_member(&mut tx, &project.id, user_id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("project member", user_id.as_str()))?;
        let current = ToolLevels::apply(ToolLevels::NONE, member.permissions.as_ref())?;
        let levels = ToolLevels::apply(current, r.permissions.as_ref())?;
        member.permissions = Some(levels.to_proto());
        member.update_time = Some(timestamp(now_ms()));
        db::upsert_member(&mut tx, &member, levels)
            .await
            .map_err(db_err)?;
        let events = [events::member_updated(&member, who.actor_id())];
        self.commit(tx, None, &member, &events).await?;
        Ok(Response::new(member))
    }

    async fn remove_project_member(
        &self,
        req: Request<pb::RemoveProjectMemberRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project_id = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let user_id = Id::parse(USER, "user_id", &r.user_id)?;
        let mut tx = self.begin().await?;
        let who = self.principal(&mut tx, &caller).await?;
        let project = self.managed_project(&mut tx, &who, &project_id).await?;
        if !db::delete_member(&mut tx, &project.id, user_id.as_str())
            .await
            .map_err(db_err)?
        {
            return Err(not_found("project member", user_id.as_str()));
        }
        let events = [events::member_removed(
            &project.id,
            user_id.as_str(),
            who.actor_id(),
        )];
        self.commit(tx, None, &(), &events).await?;
        Ok(Response::new(()))
    }

    async fn list_project_members(
        &self,
        req: Request<pb::ListProjectMembersRequest>,
    ) -> Result<Response<pb::ListProjectMembersResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project_id = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let mut conn = self.read().await?;
        let who = self.principal(&mut conn, &caller).await?;
        let project = self.visible_project(&mut conn, &who, &project_id).await?;
        let mut members = db::list_members(&mut conn, &project.id, &page.after, page.fetch_limit())
            .await
            .map_err(db_err)?;
        let next_page_token = page.finish(&mut members, |m| &m.user_id);
        Ok(Response::new(pb::ListProjectMembersResponse {
            members,
            next_page_token,
        }))
    }

    async fn get_project_access(
        &self,
        req: Request<pb::GetProjectAccessRequest>,
    ) -> Result<Response<pb::ProjectAccess>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(
            self.project_access(&caller, req.into_inner()).await?,
        ))
    }

    async fn get_company_access(
        &self,
        req: Request<pb::GetCompanyAccessRequest>,
    ) -> Result<Response<pb::CompanyAccess>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let company_id = Id::parse(COMPANY, "company_id", &r.company_id)?;
        let user_id = Id::parse(USER, "user_id", &r.user_id)?;
        let mut conn = self.read().await?;
        let who = self.principal(&mut conn, &caller).await?;
        if !who.may_query_access_of(user_id.as_str()) {
            return Err(permission_denied(
                "only services, operators and the user themselves may ask this",
            ));
        }
        let user = db::get_user(&mut conn, user_id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("user", user_id.as_str()))?;
        let company = self.visible_company(&mut conn, &who, &company_id).await?;
        let company_admin = db::is_company_admin(&mut conn, &company.id, &user.id)
            .await
            .map_err(db_err)?;
        Ok(Response::new(pb::CompanyAccess {
            company_id: company.id,
            user_id: user.id,
            user_company_id: user.company_id,
            company_admin,
        }))
    }
}
