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
use connectability_store::{Db, Tx, outbox::RelayWaker};
use tonic::{Request, Response, Status};

use crate::{
    DrawingsGateway,
    db::{self, HistoryEntry, Stored},
    domain::{self, COMPANY, CONNECTION, PROJECT, Undo, Violation, reason},
    events,
};

mod checks;
mod usecases;

use checks::*;

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
        Ok(Response::new(
            self.request(&caller, req.into_inner()).await?,
        ))
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
