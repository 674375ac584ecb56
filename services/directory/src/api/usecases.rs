//! The use cases behind the handlers: authorization against the directory, the reads
//! they need and the transactions that change state.

use super::*;

impl DirectoryApi {
    pub fn new(db: Db, relay: outbox::RelayWaker) -> Self {
        Self { db, relay }
    }

    pub(super) async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, Status> {
        self.db.pool().acquire().await.map_err(db_err)
    }

    pub(super) async fn begin(&self) -> Result<Tx, Status> {
        self.db.begin().await.map_err(db_err)
    }

    /// The caller as the directory knows them. A token for a user the directory does not
    /// know is UNAUTHENTICATED.
    pub(super) async fn principal(
        &self,
        conn: &mut AnyConnection,
        caller: &Caller,
    ) -> Result<Principal, Status> {
        match caller {
            Caller::Operator { name } => Ok(Principal::Operator(name.clone())),
            Caller::Service { name } => {
                // The services that ask the directory; any other service identity is refused.
                connectability_auth::require_service(
                    caller,
                    domain::CALLING_SERVICES,
                    "DirectoryService",
                )?;
                Ok(Principal::Service(name.clone()))
            }
            Caller::User { user_id } => {
                let user = db::get_user(conn, user_id)
                    .await
                    .map_err(db_err)?
                    .ok_or_else(|| Status::unauthenticated(format!("unknown user `{user_id}`")))?;
                let company_admin = db::is_company_admin(conn, &user.company_id, &user.id)
                    .await
                    .map_err(db_err)?;
                Ok(Principal::User {
                    id: user.id,
                    company_id: user.company_id,
                    company_admin,
                })
            }
        }
    }

    /// A company the principal may see, or NOT_FOUND (Y3: no hint it exists).
    pub(super) async fn visible_company(
        &self,
        conn: &mut AnyConnection,
        who: &Principal,
        id: &Id,
    ) -> Result<pb::Company, Status> {
        let company = db::get_company(conn, id.as_str()).await.map_err(db_err)?;
        let visible = match (&company, who) {
            (None, _) => false,
            (Some(_), p) if p.sees_everything() => true,
            (
                Some(c),
                Principal::User {
                    id: user_id,
                    company_id,
                    ..
                },
            ) => {
                *company_id == c.id
                    || db::is_member_of_company_project(conn, user_id, &c.id)
                        .await
                        .map_err(db_err)?
            }
            (Some(_), _) => false,
        };
        match company {
            Some(c) if visible => Ok(c),
            _ => Err(not_found("company", id.as_str())),
        }
    }

    /// A project the principal may see (Y3), or NOT_FOUND.
    pub(super) async fn visible_project(
        &self,
        conn: &mut AnyConnection,
        who: &Principal,
        id: &Id,
    ) -> Result<pb::Project, Status> {
        let project = db::get_project(conn, id.as_str()).await.map_err(db_err)?;
        if let Some(p) = project {
            let is_member = match who {
                Principal::User { id: user_id, .. } => db::get_member(conn, &p.id, user_id)
                    .await
                    .map_err(db_err)?
                    .is_some(),
                _ => false,
            };
            if who.sees_project(&p.company_id, is_member) {
                return Ok(p);
            }
        }
        Err(not_found("project", id.as_str()))
    }

    /// A project whose directory the principal manages (Y2): NOT_FOUND if they cannot see
    /// it, PERMISSION_DENIED if they can see but not manage it.
    pub(super) async fn managed_project(
        &self,
        conn: &mut AnyConnection,
        who: &Principal,
        id: &Id,
    ) -> Result<pb::Project, Status> {
        let project = self.visible_project(conn, who, id).await?;
        if !who.manages_company(&project.company_id) {
            return Err(permission_denied(format!(
                "only company admins of `{}` manage project `{}`",
                project.company_id, project.id
            )));
        }
        Ok(project)
    }

    /// A company the principal administers: NOT_FOUND if invisible, PERMISSION_DENIED if
    /// visible but not theirs to manage.
    pub(super) async fn managed_company(
        &self,
        conn: &mut AnyConnection,
        who: &Principal,
        id: &Id,
    ) -> Result<pb::Company, Status> {
        let company = self.visible_company(conn, who, id).await?;
        if !who.manages_company(&company.id) {
            return Err(permission_denied(format!(
                "only company admins of `{}` may do this",
                company.id
            )));
        }
        Ok(company)
    }

    /// The response of an earlier call with the same request id, if there was one.
    pub(super) async fn replayed<M: prost::Message + Default>(
        &self,
        tx: &mut Tx,
        scope: &str,
        request_id: &Option<String>,
    ) -> Result<Option<M>, Status> {
        connectability_platform::requests::earlier(tx, scope, request_id.as_deref()).await
    }

    /// Writes the events and the request id beside the change, commits, wakes the relay.
    pub(super) async fn commit<M: prost::Message>(
        &self,
        tx: Tx,
        request: Option<(&str, &str)>,
        response: &M,
        events: &[Envelope],
    ) -> Result<(), Status> {
        let (scope, request_id) = match request {
            Some((scope, rid)) => (scope, Some(rid)),
            None => ("", None),
        };
        connectability_platform::requests::commit_once(
            tx,
            events,
            scope,
            request_id,
            response,
            &self.relay,
        )
        .await
    }
}

impl DirectoryApi {
    /// A user's access to a project: membership, tool levels, company admin.
    pub(super) async fn project_access(
        &self,
        caller: &Caller,
        r: pb::GetProjectAccessRequest,
    ) -> Result<pb::ProjectAccess, Status> {
        let project_id = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let user_id = Id::parse(USER, "user_id", &r.user_id)?;
        let mut conn = self.read().await?;
        let who = self.principal(&mut conn, caller).await?;
        if !who.may_query_access_of(user_id.as_str()) {
            return Err(permission_denied(
                "only services, operators and the user themselves may ask this",
            ));
        }
        let user = db::get_user(&mut conn, user_id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("user", user_id.as_str()))?;
        let project = db::get_project(&mut conn, project_id.as_str())
            .await
            .map_err(db_err)?;
        let member = match &project {
            Some(p) => db::get_member(&mut conn, &p.id, &user.id)
                .await
                .map_err(db_err)?,
            None => None,
        };
        // A user asking about a project they cannot see learns nothing about it (Y3).
        let project = match project {
            Some(p)
                if who.sees_everything()
                    || member.is_some()
                    || who.manages_company(&p.company_id) =>
            {
                p
            }
            _ => return Err(not_found("project", project_id.as_str())),
        };
        let company_admin = db::is_company_admin(&mut conn, &project.company_id, &user.id)
            .await
            .map_err(db_err)?;
        Ok(pb::ProjectAccess {
            project_id: project.id,
            user_id: user.id,
            project_company_id: project.company_id,
            project_active: project.active,
            user_company_id: user.company_id,
            member: member.is_some(),
            permissions: Some(
                member
                    .and_then(|m| m.permissions)
                    .unwrap_or_else(|| ToolLevels::NONE.to_proto()),
            ),
            company_admin,
        })
    }
}

impl DirectoryApi {
    /// Adds a member with tool levels (company admins only).
    pub(super) async fn add_member(
        &self,
        caller: &Caller,
        r: pb::AddProjectMemberRequest,
    ) -> Result<pb::ProjectMember, Status> {
        let project_id = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let user_id = Id::parse(USER, "user_id", &r.user_id)?;
        let levels = ToolLevels::apply(ToolLevels::NONE, r.permissions.as_ref())?;
        let request_id = domain::parse_request_id(&r.request_id)?;
        let mut tx = self.begin().await?;
        let who = self.principal(&mut tx, caller).await?;
        let project = self.managed_project(&mut tx, &who, &project_id).await?;
        let scope = scope("AddProjectMember", &who);
        if let Some(prev) = self.replayed(&mut tx, &scope, &request_id).await? {
            return Ok(prev);
        }
        let user = db::get_user(&mut tx, user_id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("user", user_id.as_str()))?;
        if db::get_member(&mut tx, &project.id, &user.id)
            .await
            .map_err(db_err)?
            .is_some()
        {
            return Err(Status::already_exists(format!(
                "user `{}` is already in the directory of `{}`; use UpdateProjectMember",
                user.id, project.id
            )));
        }
        let now = Some(timestamp(now_ms()));
        let member = pb::ProjectMember {
            project_id: project.id,
            user_id: user.id,
            permissions: Some(levels.to_proto()),
            create_time: now,
            update_time: now,
        };
        db::upsert_member(&mut tx, &member, levels)
            .await
            .map_err(db_err)?;
        let events = [events::member_added(&member, who.actor_id())];
        self.commit(
            tx,
            request_id.as_deref().map(|r| (scope.as_str(), r)),
            &member,
            &events,
        )
        .await?;
        Ok(member)
    }
}
