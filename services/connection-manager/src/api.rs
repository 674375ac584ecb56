//! The gRPC layer: parse, gather facts (directory over gRPC, own store), apply the rules in
//! `domain`, write the change with its history and events in one transaction.

use std::{collections::BTreeMap, sync::Arc};

use connectability_auth::Caller;
use connectability_events::Envelope;
use connectability_platform::{
    clock::Clock,
    directory::DirectoryGateway,
    errors::{failed_preconditions, internal, invalid_argument, not_found, permission_denied},
    input::{Id, parse_request_id, parse_text},
    paging::PageRequest,
    time::timestamp,
};
use connectability_proto::{
    connections::v1::{
        self as pb, ApprovalMode, ConnectionAction, ConnectionRole, ConnectionStatus, Feature,
        connection_service_server::ConnectionService,
    },
    directory::v1::{Company, ProjectAccess},
};
use connectability_store::{Db, Tx, outbox::RelayWaker, request_ids};
use tonic::{Request, Response, Status};

use crate::{
    DrawingsGateway,
    db::{self, HistoryEntry, Stored},
    domain::{self, COMPANY, CONNECTION, PROJECT, Undo, Violation, reason},
    events,
};

/// Who approved automatically, in histories.
const AUTO_APPROVER: &str = "auto-approve";

#[derive(Clone)]
pub struct ConnectionApi {
    db: Db,
    relay: RelayWaker,
    directory: DirectoryGateway,
    drawings: DrawingsGateway,
    clock: Arc<dyn Clock>,
}

fn db_err(e: sqlx::Error) -> Status {
    internal(e)
}

fn rules(violations: &[Violation]) -> Status {
    let pairs: Vec<(&str, String)> = violations
        .iter()
        .map(|v| (v.reason, v.message.clone()))
        .collect();
    failed_preconditions(&pairs)
}

fn rule(reason: &'static str, message: &str) -> Status {
    rules(&[Violation {
        reason,
        message: message.to_string(),
    }])
}

/// Connections are requested and managed by people: operators and services only read.
fn acting_user(caller: &Caller) -> Result<&str, Status> {
    match caller {
        Caller::User { user_id } => Ok(user_id),
        _ => Err(permission_denied(
            "connections are requested and managed by project members",
        )),
    }
}

/// Everything the rules need to judge a request.
struct Facts {
    down: ProjectAccess,
    up: ProjectAccess,
    down_company: Company,
    up_company: Company,
    existing: domain::ExistingConnections,
}

/// A connection as the caller sees it, with their access on each side (None for operators
/// and services).
struct Visible {
    stored: Stored,
    up: Option<ProjectAccess>,
    down: Option<ProjectAccess>,
}

impl ConnectionApi {
    pub fn new(
        db: Db,
        relay: RelayWaker,
        directory: DirectoryGateway,
        drawings: DrawingsGateway,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            db,
            relay,
            directory,
            drawings,
            clock,
        }
    }

    /// C17's facts, asked of drawings-sync only when DRAWINGS is among `features`.
    async fn upstream_revisions(
        &self,
        upstream: &str,
        features: &[Feature],
    ) -> Result<Option<(i64, i64)>, Status> {
        if !features.contains(&Feature::Drawings) {
            return Ok(None);
        }
        let count = self.drawings.published_revisions(upstream).await?;
        Ok(Some((count.count, count.limit)))
    }

    async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, Status> {
        self.db.pool().acquire().await.map_err(db_err)
    }

    async fn begin(&self) -> Result<Tx, Status> {
        self.db.begin().await.map_err(db_err)
    }

    /// A project the user may see (Y3), or NOT_FOUND.
    async fn seen_project(&self, project: &Id, user: &str) -> Result<ProjectAccess, Status> {
        self.directory
            .project_access(project.as_str(), user)
            .await?
            .filter(domain::sees_project)
            .ok_or_else(|| not_found("project", project.as_str()))
    }

    async fn company_of(&self, access: &ProjectAccess) -> Result<Company, Status> {
        self.directory
            .company(&access.project_company_id)
            .await?
            .ok_or_else(|| {
                internal(format!(
                    "company `{}` of a project is missing",
                    access.project_company_id
                ))
            })
    }

    async fn facts(
        &self,
        user: &str,
        down: &Id,
        up: &Id,
        features: &[Feature],
    ) -> Result<Facts, Status> {
        let down_access = self.seen_project(down, user).await?;
        let up_access = self.seen_project(up, user).await?;
        let down_company = self.company_of(&down_access).await?;
        let up_company = self.company_of(&up_access).await?;
        let mut existing = db::existing(&mut *self.read().await?, down.as_str(), up.as_str())
            .await
            .map_err(db_err)?;
        existing.upstream_revisions = self.upstream_revisions(up.as_str(), features).await?;
        Ok(Facts {
            down: down_access,
            up: up_access,
            down_company,
            up_company,
            existing,
        })
    }

    /// A connection the caller may see (C18), or NOT_FOUND.
    async fn visible(&self, id: &Id, caller: &Caller) -> Result<Visible, Status> {
        let stored = db::get(&mut *self.read().await?, id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("connection", id.as_str()))?;
        let Caller::User { user_id } = caller else {
            return Ok(Visible {
                stored,
                up: None,
                down: None,
            });
        };
        let c = &stored.connection;
        let up = self
            .directory
            .project_access(&c.upstream_project_id, user_id)
            .await?;
        let down = self
            .directory
            .project_access(&c.downstream_project_id, user_id)
            .await?;
        let sees = [&up, &down]
            .iter()
            .any(|a| a.as_ref().is_some_and(domain::sees_connections));
        if !sees {
            return Err(not_found("connection", id.as_str()));
        }
        Ok(Visible { stored, up, down })
    }

    /// Stores transition `t` of `stored` by `actor`: the connection (if nobody changed it
    /// meanwhile), its history entry and its events, in one transaction.
    async fn apply(
        &self,
        mut stored: Stored,
        t: domain::Transition,
        actor: &str,
    ) -> Result<pb::Connection, Status> {
        let now = self.clock.now_ms();
        match t.happened {
            domain::Happened::Approved => stored.approve_ms = Some(now),
            domain::Happened::Undone {
                undo: Undo::Unapprove,
            } => stored.approve_ms = None,
            _ => {}
        }
        let (reason, added) = match &t.happened {
            domain::Happened::Rejected { message } => (message.as_str(), &[][..]),
            domain::Happened::Disconnected { reason } => (reason.as_str(), &[][..]),
            domain::Happened::FeaturesAdded { added } => ("", added.as_slice()),
            _ => ("", &[][..]),
        };
        let entry = history(&t.connection, t.action(), t.from, actor, now, reason, added);
        let out = events::of(&t, actor);
        stored.connection = t.connection.clone();
        self.save(&stored, t.from, &[entry], &out).await?;
        Ok(stored.connection)
    }

    /// Writes the change: the connection (if still in `expected` status), history, events.
    async fn save(
        &self,
        stored: &Stored,
        expected: ConnectionStatus,
        history: &[HistoryEntry<'_>],
        events: &[Envelope],
    ) -> Result<(), Status> {
        let now = self.clock.now_ms();
        let mut tx = self.begin().await?;
        if !db::update(&mut tx, stored, expected, now)
            .await
            .map_err(db_err)?
        {
            return Err(rule(
                reason::INVALID_STATE,
                "the connection changed meanwhile; read it again",
            ));
        }
        // REJECTED and UNDONE connections do not count (C8, C10, C14): the projects are free
        // to take either role again unless another connection holds it.
        let c = &stored.connection;
        if matches!(
            c.status(),
            ConnectionStatus::Rejected | ConnectionStatus::Undone
        ) {
            db::release_roles(&mut tx, &[&c.upstream_project_id, &c.downstream_project_id])
                .await
                .map_err(db_err)?;
        }
        db::add_history(&mut tx, history).await.map_err(db_err)?;
        connectability_store::commit(tx, events, None, &self.relay)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

fn history<'a>(
    c: &'a pb::Connection,
    action: ConnectionAction,
    from: ConnectionStatus,
    actor: &'a str,
    time_ms: i64,
    reason: &'a str,
    features: &'a [Feature],
) -> HistoryEntry<'a> {
    HistoryEntry {
        connection_id: &c.id,
        action,
        from,
        to: c.status(),
        actor_id: actor,
        time_ms,
        reason,
        features,
    }
}

#[tonic::async_trait]
impl ConnectionService for ConnectionApi {
    async fn check_connection_eligibility(
        &self,
        req: Request<pb::CheckConnectionEligibilityRequest>,
    ) -> Result<Response<pb::CheckConnectionEligibilityResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let user = acting_user(&caller)?;
        let r = req.into_inner();
        let down = Id::parse(PROJECT, "downstream_project_id", &r.downstream_project_id)?;
        let up = Id::parse(PROJECT, "upstream_project_id", &r.upstream_project_id)?;
        let features = domain::parse_features(&r.features)?;
        let f = self.facts(user, &down, &up, &features).await?;
        let violations = domain::eligibility(
            &features,
            &f.down,
            &f.up,
            &f.down_company,
            &f.up_company,
            &f.existing,
        );
        let settings = db::settings(&mut *self.read().await?, &f.up_company.id)
            .await
            .map_err(db_err)?;
        Ok(Response::new(pb::CheckConnectionEligibilityResponse {
            eligible: violations.is_empty(),
            reasons: violations.iter().map(|v| v.reason.to_string()).collect(),
            messages: violations.into_iter().map(|v| v.message).collect(),
            upstream_approval_mode: settings.approval_mode,
        }))
    }

    async fn request_connection(
        &self,
        req: Request<pb::RequestConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let user = acting_user(&caller)?.to_string();
        let r = req.into_inner();
        let down = Id::parse(PROJECT, "downstream_project_id", &r.downstream_project_id)?;
        let up = Id::parse(PROJECT, "upstream_project_id", &r.upstream_project_id)?;
        let features = domain::parse_features(&r.features)?;
        let request_id = parse_request_id(&r.request_id)?;
        let scope = format!("connections.RequestConnection:{user}");
        if let Some(rid) = &request_id
            && let Some(bytes) = request_ids::find(&mut *self.read().await?, &scope, rid)
                .await
                .map_err(db_err)?
        {
            return Ok(Response::new(
                prost::Message::decode(bytes.as_slice()).map_err(internal)?,
            ));
        }

        let f = self.facts(&user, &down, &up, &features).await?;
        let violations = domain::eligibility(
            &features,
            &f.down,
            &f.up,
            &f.down_company,
            &f.up_company,
            &f.existing,
        );
        if !violations.is_empty() {
            return Err(rules(&violations));
        }
        let mut tx = self.begin().await?;
        let settings = db::settings(&mut tx, &f.up_company.id)
            .await
            .map_err(db_err)?;
        // C11: the upstream company's setting decides.
        let auto = settings.approval_mode() != ApprovalMode::RequireReview;
        let now = self.clock.now_ms();
        let stored = Stored {
            connection: pb::Connection {
                id: Id::generate(CONNECTION).to_string(),
                upstream_project_id: up.to_string(),
                upstream_company_id: f.up_company.id.clone(),
                downstream_project_id: down.to_string(),
                downstream_company_id: f.down_company.id.clone(),
                features: features.iter().map(|f| *f as i32).collect(),
                status: if auto {
                    ConnectionStatus::Active
                } else {
                    ConnectionStatus::Pending
                } as i32,
                requested_by: user.clone(),
                request_time: Some(timestamp(now)),
                approve_time: auto.then(|| timestamp(now)),
                update_time: Some(timestamp(now)),
                version: 1,
                ..Default::default()
            },
            request_ms: now,
            approve_ms: auto.then_some(now),
        };
        if let Err(e) = db::insert(&mut tx, &stored).await {
            if db::is_unique_violation(&e) {
                // Another request for this downstream committed first (C8, C14).
                return Err(rule(
                    reason::DOWNSTREAM_ALREADY_CONNECTED,
                    "another connection of this downstream project came first",
                ));
            }
            return Err(db_err(e));
        }
        // C10, held by the database against concurrent requests.
        let mut role_violations = Vec::new();
        if db::claim_role(&mut tx, down.as_str(), ConnectionRole::Downstream)
            .await
            .map_err(db_err)?
            != ConnectionRole::Downstream
        {
            role_violations.push(Violation {
                reason: reason::PROJECT_IS_UPSTREAM,
                message: format!("`{down}` is upstream in a connection"),
            });
        }
        if db::claim_role(&mut tx, up.as_str(), ConnectionRole::Upstream)
            .await
            .map_err(db_err)?
            != ConnectionRole::Upstream
        {
            role_violations.push(Violation {
                reason: reason::PROJECT_IS_DOWNSTREAM,
                message: format!("`{up}` is downstream in a connection"),
            });
        }
        if !role_violations.is_empty() {
            tx.rollback().await.map_err(db_err)?;
            return Err(rules(&role_violations));
        }
        let c = &stored.connection;
        let mut entries = vec![HistoryEntry {
            to: ConnectionStatus::Pending,
            ..history(
                c,
                ConnectionAction::Requested,
                ConnectionStatus::Unspecified,
                &user,
                now,
                "",
                &features,
            )
        }];
        let mut out = vec![events::requested(c, &user, !auto)];
        if auto {
            entries.push(history(
                c,
                ConnectionAction::AutoApproved,
                ConnectionStatus::Pending,
                AUTO_APPROVER,
                now,
                "",
                &[],
            ));
            out.push(events::activated(c, AUTO_APPROVER, true));
        }
        db::add_history(&mut tx, &entries).await.map_err(db_err)?;
        let request = request_id
            .as_deref()
            .map(|rid| (scope.as_str(), rid, prost::Message::encode_to_vec(c)));
        if !connectability_store::commit(tx, &out, request, &self.relay)
            .await
            .map_err(db_err)?
        {
            return Err(Status::aborted(
                "a concurrent call with the same request_id won; retry to get its result",
            ));
        }
        Ok(Response::new(stored.connection))
    }

    async fn approve_connection(
        &self,
        req: Request<pb::ApproveConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(CONNECTION, "id", &req.get_ref().id)?;
        let user = acting_user(&caller)?;
        let Visible { stored, up, .. } = self.visible(&id, &caller).await?;
        if !up.as_ref().is_some_and(domain::is_connection_admin) {
            return Err(permission_denied(
                "only Connection Manager admins of the upstream project approve",
            ));
        }
        let t = domain::approve(&stored.connection, user, self.clock.now_ms())
            .map_err(|v| rules(&[v]))?;
        Ok(Response::new(self.apply(stored, t, user).await?))
    }

    async fn reject_connection(
        &self,
        req: Request<pb::RejectConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(CONNECTION, "id", &req.get_ref().id)?;
        let message = parse_text("message", &req.get_ref().message, 2000)?;
        let user = acting_user(&caller)?;
        let Visible { stored, up, .. } = self.visible(&id, &caller).await?;
        if !up.as_ref().is_some_and(domain::is_connection_admin) {
            return Err(permission_denied(
                "only Connection Manager admins of the upstream project reject",
            ));
        }
        let t = domain::reject(&stored.connection, &message, self.clock.now_ms())
            .map_err(|v| rules(&[v]))?;
        Ok(Response::new(self.apply(stored, t, user).await?))
    }

    async fn undo_connection(
        &self,
        req: Request<pb::UndoConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(CONNECTION, "id", &req.get_ref().id)?;
        let user = acting_user(&caller)?;
        let Visible { stored, .. } = self.visible(&id, &caller).await?;
        let now = self.clock.now_ms();
        let previous = stored.status();
        let facts = domain::UndoFacts {
            status: previous,
            requested_by: &stored.connection.requested_by,
            request_ms: stored.request_ms,
            approved_by: &stored.connection.approved_by,
            approve_ms: stored.approve_ms,
        };
        let undo = match domain::undo(&facts, user, now) {
            Ok(u) => u,
            Err(Some(v)) => return Err(rules(&[v])),
            Err(None) => {
                return Err(permission_denied(
                    "only the initiator (within 5 minutes) or the approver can undo",
                ));
            }
        };
        let t = domain::apply_undo(&stored.connection, undo, now).map_err(|v| rules(&[v]))?;
        Ok(Response::new(self.apply(stored, t, user).await?))
    }

    async fn disconnect_connection(
        &self,
        req: Request<pb::DisconnectConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(CONNECTION, "id", &req.get_ref().id)?;
        let why = parse_text("reason", &req.get_ref().reason, 2000)?;
        if why.is_empty() {
            return Err(invalid_argument(
                "reason",
                "say why the projects are disconnected",
            ));
        }
        let user = acting_user(&caller)?;
        let Visible { stored, up, down } = self.visible(&id, &caller).await?;
        let admin = [&up, &down]
            .iter()
            .any(|a| a.as_ref().is_some_and(domain::is_connection_admin));
        if !admin {
            return Err(permission_denied(
                "only Connection Manager admins of either project disconnect",
            ));
        }
        let t = domain::disconnect(&stored.connection, user, &why, self.clock.now_ms())
            .map_err(|v| rules(&[v]))?;
        Ok(Response::new(self.apply(stored, t, user).await?))
    }

    async fn add_connection_features(
        &self,
        req: Request<pb::AddConnectionFeaturesRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(CONNECTION, "id", &req.get_ref().id)?;
        let requested = domain::parse_features(&req.get_ref().features)?;
        let user = acting_user(&caller)?;
        let Visible { stored, up, down } = self.visible(&id, &caller).await?;
        if stored.status() != ConnectionStatus::Active {
            return Err(rule(
                reason::INVALID_STATE,
                "features can be added to an active connection only",
            ));
        }
        if requested.is_empty() {
            return Err(rule(
                reason::NO_FEATURES_SELECTED,
                "select at least one feature to add",
            ));
        }
        let (Some(up), Some(down)) = (up, down) else {
            return Err(permission_denied("you need access to both projects"));
        };
        // C16: the same permission checks as a request (C2, C3), and C17 for drawings.
        let mut violations = domain::permission_violations(&requested, &down, &up);
        let revisions = self
            .upstream_revisions(&stored.connection.upstream_project_id, &requested)
            .await?;
        violations.extend(domain::revision_limit_violation(
            &stored.connection.upstream_project_id,
            revisions,
        ));
        if !violations.is_empty() {
            return Err(rules(&violations));
        }
        match domain::add_features(&stored.connection, &requested, self.clock.now_ms())
            .map_err(|v| rules(&[v]))?
        {
            Some(t) => Ok(Response::new(self.apply(stored, t, user).await?)),
            None => Ok(Response::new(stored.connection)),
        }
    }

    async fn get_connection(
        &self,
        req: Request<pb::GetConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let caller = connectability_auth::caller(&req)?;
        if let Caller::Service { .. } = caller {
            // The sync services confirm connection events; no other service reads connections.
            connectability_auth::require_service(
                &caller,
                &["drawings-sync", "rfi-sync", "submittal-sync"],
                "GetConnection",
            )?;
        }
        let id = Id::parse(CONNECTION, "id", &req.get_ref().id)?;
        Ok(Response::new(
            self.visible(&id, &caller).await?.stored.connection,
        ))
    }

    async fn list_connections(
        &self,
        req: Request<pb::ListConnectionsRequest>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let role = ConnectionRole::try_from(r.role)
            .map_err(|_| invalid_argument("role", format!("{} is not a ConnectionRole", r.role)))?;
        let statuses = r
            .statuses
            .iter()
            .map(|s| match ConnectionStatus::try_from(*s) {
                Ok(ConnectionStatus::Unspecified) | Err(_) => Err(invalid_argument(
                    "statuses",
                    format!("{s} is not a ConnectionStatus"),
                )),
                Ok(status) => Ok(status),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        if let Caller::User { user_id } = &caller {
            let access = self.seen_project(&project, user_id).await?;
            if !domain::sees_connections(&access) {
                return Err(permission_denied(
                    "you need at least READ_ONLY on Connection Manager in this project",
                ));
            }
        }
        let mut connections = db::list(
            &mut *self.read().await?,
            project.as_str(),
            role,
            &statuses,
            &page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(db_err)?;
        let next_page_token = page.finish(&mut connections, |c| &c.id);
        Ok(Response::new(pb::ListConnectionsResponse {
            connections,
            next_page_token,
        }))
    }

    async fn list_connection_history(
        &self,
        req: Request<pb::ListConnectionHistoryRequest>,
    ) -> Result<Response<pb::ListConnectionHistoryResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let id = Id::parse(CONNECTION, "connection_id", &r.connection_id)?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        self.visible(&id, &caller).await?;
        let mut rows = db::history(
            &mut *self.read().await?,
            id.as_str(),
            &page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(db_err)?;
        let next_page_token = page.finish(&mut rows, |(key, _)| key);
        Ok(Response::new(pb::ListConnectionHistoryResponse {
            entries: rows.into_iter().map(|(_, e)| e).collect(),
            next_page_token,
        }))
    }

    async fn list_connectable_projects(
        &self,
        req: Request<pb::ListConnectableProjectsRequest>,
    ) -> Result<Response<pb::ListConnectableProjectsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let user = acting_user(&caller)?.to_string();
        let authorization = req
            .metadata()
            .get("authorization")
            .cloned()
            .ok_or_else(|| Status::unauthenticated("missing authorization"))?;
        let r = req.into_inner();
        let exclude = if r.downstream_project_id.is_empty() {
            String::new()
        } else {
            Id::parse(PROJECT, "downstream_project_id", &r.downstream_project_id)?.to_string()
        };
        let projects: Vec<_> = self
            .directory
            .member_projects(&authorization)
            .await?
            .into_iter()
            .filter(|p| p.active && p.id != exclude)
            .collect();
        // C10: a project that is downstream anywhere can never be upstream.
        let ids: Vec<String> = projects.iter().map(|p| p.id.clone()).collect();
        let downstream = db::downstream_projects(&mut *self.read().await?, &ids)
            .await
            .map_err(db_err)?;
        let mut by_company: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for p in projects.into_iter().filter(|p| !downstream.contains(&p.id)) {
            by_company.entry(p.company_id.clone()).or_default().push(p);
        }
        let own_company = self
            .directory
            .user(&user)
            .await?
            .map(|u| u.company_id)
            .unwrap_or_default();
        let mut companies = Vec::with_capacity(by_company.len());
        for (company_id, projects) in by_company {
            let Some(company) = self.directory.company(&company_id).await? else {
                continue;
            };
            // C6: GovCloud companies cannot take part, so their projects are not offered.
            if company.govcloud {
                continue;
            }
            companies.push(pb::CompanyProjects {
                current_company: company.id == own_company,
                company: Some(company),
                projects,
            });
        }
        // The caller's own company first ("Current Company"), then by name.
        companies.sort_by(|a, b| {
            b.current_company.cmp(&a.current_company).then_with(|| {
                a.company
                    .as_ref()
                    .map(|c| &c.name)
                    .cmp(&b.company.as_ref().map(|c| &c.name))
            })
        });
        Ok(Response::new(pb::ListConnectableProjectsResponse {
            companies,
        }))
    }

    async fn get_company_connection_settings(
        &self,
        req: Request<pb::GetCompanyConnectionSettingsRequest>,
    ) -> Result<Response<pb::CompanyConnectionSettings>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let company = Id::parse(COMPANY, "company_id", &req.get_ref().company_id)?;
        if let Caller::User { user_id } = &caller {
            let access = self
                .directory
                .company_access(company.as_str(), user_id)
                .await?;
            if !access.is_some_and(|a| a.user_company_id == company.as_str() || a.company_admin) {
                return Err(not_found("company", company.as_str()));
            }
        } else if self.directory.company(company.as_str()).await?.is_none() {
            return Err(not_found("company", company.as_str()));
        }
        let settings = db::settings(&mut *self.read().await?, company.as_str())
            .await
            .map_err(db_err)?;
        Ok(Response::new(settings))
    }

    async fn update_company_connection_settings(
        &self,
        req: Request<pb::UpdateCompanyConnectionSettingsRequest>,
    ) -> Result<Response<pb::CompanyConnectionSettings>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let company = Id::parse(COMPANY, "company_id", &r.company_id)?;
        let mode = match ApprovalMode::try_from(r.approval_mode) {
            Ok(ApprovalMode::Unspecified) | Err(_) => {
                return Err(invalid_argument(
                    "approval_mode",
                    "must be APPROVAL_MODE_AUTO_APPROVE or APPROVAL_MODE_REQUIRE_REVIEW",
                ));
            }
            Ok(m) => m,
        };
        let user = acting_user(&caller)?;
        let access = self
            .directory
            .company_access(company.as_str(), user)
            .await?;
        match access {
            Some(a) if a.company_admin => {}
            Some(a) if a.user_company_id == company.as_str() => {
                return Err(permission_denied(
                    "only company admins change the approval setting",
                ));
            }
            _ => return Err(not_found("company", company.as_str())),
        }
        let mut tx = self.begin().await?;
        db::save_settings(&mut tx, company.as_str(), mode, user, self.clock.now_ms())
            .await
            .map_err(db_err)?;
        let settings = db::settings(&mut tx, company.as_str())
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Response::new(settings))
    }
}
