//! The gRPC layer: distribution lists (read by the tool's members, changed by its admins)
//! and each caller's own inbox.

use std::sync::Arc;

use connectability_auth::Caller;
use connectability_platform::{
    clock::Clock,
    directory::{DirectoryGateway, sees_project, tool_level},
    errors::{internal, invalid_argument, not_found, permission_denied},
    input::Id,
    paging::PageRequest,
};
use connectability_proto::{
    directory::v1::{PermissionLevel, ProjectAccess, Tool},
    notifications::v1::{self as pb, notification_service_server::NotificationService},
};
use connectability_store::Db;
use tonic::{Request, Response, Status};

use crate::{db, events::NotificationEvents};

#[derive(Clone)]
pub struct NotificationApi {
    db: Db,
    directory: DirectoryGateway,
    events: Arc<NotificationEvents>,
    clock: Arc<dyn Clock>,
}

fn db_err(e: sqlx::Error) -> Status {
    internal(e)
}

fn user_of(caller: &Caller) -> Result<&str, Status> {
    match caller {
        Caller::User { user_id } => Ok(user_id),
        _ => Err(permission_denied("notifications belong to people")),
    }
}

fn parse_tool(raw: i32) -> Result<Tool, Status> {
    match Tool::try_from(raw) {
        Ok(Tool::Unspecified) | Err(_) => Err(invalid_argument(
            "tool",
            "must be CONNECTION_MANAGER, DRAWINGS, RFIS or SUBMITTALS",
        )),
        Ok(t) => Ok(t),
    }
}

fn level(access: &ProjectAccess, tool: Tool) -> PermissionLevel {
    use connectability_platform::directory::Tool as T;
    let t = match tool {
        Tool::Drawings => T::Drawings,
        Tool::Rfis => T::Rfis,
        Tool::Submittals => T::Submittals,
        Tool::ConnectionManager | Tool::Unspecified => T::ConnectionManager,
    };
    tool_level(access, t)
}

impl NotificationApi {
    pub fn new(
        db: Db,
        directory: DirectoryGateway,
        events: Arc<NotificationEvents>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            db,
            directory,
            events,
            clock,
        }
    }

    async fn access(&self, user: &str, project: &Id) -> Result<ProjectAccess, Status> {
        self.directory
            .project_access(project.as_str(), user)
            .await?
            .filter(sees_project)
            .ok_or_else(|| not_found("project", project.as_str()))
    }

    async fn list(&self, project: &Id, tool: Tool) -> Result<pb::DistributionList, Status> {
        let mut conn = self.db.pool().acquire().await.map_err(db_err)?;
        let setting = db::list_setting(&mut conn, project.as_str(), tool as i32)
            .await
            .map_err(db_err)?;
        let recipient_ids = self
            .events
            .resolve(&mut conn, project.as_str(), tool)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(pb::DistributionList {
            project_id: project.to_string(),
            tool: tool as i32,
            narrowed: setting.narrowed,
            selected_admin_ids: setting.selected_admins,
            company_admin_ids: setting.company_admins,
            recipient_ids,
        })
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn get_distribution_list(
        &self,
        req: Request<pb::GetDistributionListRequest>,
    ) -> Result<Response<pb::DistributionList>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse("prj", "project_id", &r.project_id)?;
        let tool = parse_tool(r.tool)?;
        let access = self.access(user_of(&caller)?, &project).await?;
        if level(&access, tool) == PermissionLevel::None && !access.company_admin {
            return Err(permission_denied(
                "you need access to this tool to see its distribution list",
            ));
        }
        Ok(Response::new(self.list(&project, tool).await?))
    }

    async fn update_distribution_list(
        &self,
        req: Request<pb::UpdateDistributionListRequest>,
    ) -> Result<Response<pb::DistributionList>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse("prj", "project_id", &r.project_id)?;
        let tool = parse_tool(r.tool)?;
        let user = user_of(&caller)?;
        let access = self.access(user, &project).await?;
        if level(&access, tool) != PermissionLevel::Admin {
            return Err(permission_denied(
                "only ADMINs of this tool change its distribution list",
            ));
        }
        // Only eligible people: the tool's current admins, and the company's admins.
        let members = self.directory.members(project.as_str()).await?;
        let admins: Vec<String> = members
            .iter()
            .filter(|m| {
                level(
                    &ProjectAccess {
                        member: true,
                        permissions: m.permissions,
                        ..Default::default()
                    },
                    tool,
                ) == PermissionLevel::Admin
            })
            .map(|m| m.user_id.clone())
            .collect();
        let not_admins: Vec<&String> = r
            .selected_admin_ids
            .iter()
            .filter(|id| !admins.contains(id))
            .collect();
        if !not_admins.is_empty() {
            return Err(invalid_argument(
                "selected_admin_ids",
                format!(
                    "not ADMIN on {} in this project: {}",
                    tool.as_str_name(),
                    not_admins
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        // Seed 002: only the Connection Manager list may add company admins; the tools'
        // lists may only be narrowed.
        if tool != Tool::ConnectionManager && !r.company_admin_ids.is_empty() {
            return Err(invalid_argument(
                "company_admin_ids",
                "only the CONNECTION_MANAGER list may add company admins; this list may only be narrowed",
            ));
        }
        let mut not_company_admins = Vec::new();
        for id in &r.company_admin_ids {
            let ok = self
                .directory
                .company_access(&access.project_company_id, id)
                .await?
                .is_some_and(|a| a.company_admin);
            if !ok {
                not_company_admins.push(id.as_str());
            }
        }
        if !not_company_admins.is_empty() {
            return Err(invalid_argument(
                "company_admin_ids",
                format!(
                    "not company admins of the project's company: {}",
                    not_company_admins.join(", ")
                ),
            ));
        }
        let mut selected = r.selected_admin_ids.clone();
        selected.sort();
        selected.dedup();
        let mut company_admins = r.company_admin_ids.clone();
        company_admins.sort();
        company_admins.dedup();
        let setting = db::ListSetting {
            narrowed: r.narrowed,
            selected_admins: selected,
            company_admins,
        };
        db::save_list_setting(
            &mut *self.db.pool().acquire().await.map_err(db_err)?,
            project.as_str(),
            tool as i32,
            &setting,
            user,
            self.clock.now_ms(),
        )
        .await
        .map_err(db_err)?;
        Ok(Response::new(self.list(&project, tool).await?))
    }

    async fn list_notifications(
        &self,
        req: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let user = user_of(&caller)?.to_string();
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let mut rows = db::inbox(
            &mut *self.db.pool().acquire().await.map_err(db_err)?,
            &user,
            r.unread_only,
            &page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(db_err)?;
        let next_page_token = page.finish(&mut rows, |n| &n.id);
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: rows,
            next_page_token,
        }))
    }

    async fn mark_notifications_read(
        &self,
        req: Request<pb::MarkNotificationsReadRequest>,
    ) -> Result<Response<pb::MarkNotificationsReadResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let user = user_of(&caller)?.to_string();
        let ids = req.into_inner().ids;
        for id in &ids {
            Id::parse("ntf", "ids", id)?;
        }
        let marked = db::mark_read(
            &mut *self.db.pool().acquire().await.map_err(db_err)?,
            &user,
            &ids,
            self.clock.now_ms(),
        )
        .await
        .map_err(db_err)?;
        Ok(Response::new(pb::MarkNotificationsReadResponse {
            marked: marked as i64,
        }))
    }
}
