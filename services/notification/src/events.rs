//! What the notification service consumes: connection events (N1-N4) and drawings-sync's
//! events (N5-N7). Recipients are resolved when the event is handled, from the directory
//! over gRPC; each (event, recipient) gets one notification and one email (N8).

use std::sync::Arc;

use async_trait::async_trait;
use connectability_events::Envelope;
use connectability_platform::{
    clock::Clock,
    directory::{DirectoryGateway, Tool as LevelTool, tool_level},
    events::decode,
    input::Id,
};
use connectability_proto::{
    EventMessage,
    connections::v1 as cpb,
    directory::v1::{PermissionLevel, Tool},
    drawings::v1 as dpb,
    rfis::v1 as rpb,
    submittals::v1 as spb,
};
use connectability_store::{Tx, inbox::InboxHandler};

use crate::{
    db,
    domain::{Happened, Names, Side, plan, recipients},
};

pub struct NotificationEvents {
    pub directory: DirectoryGateway,
    pub clock: Arc<dyn Clock>,
    pub mail: Arc<tokio::sync::Notify>,
    /// Links in emails point under this URL.
    pub base_url: String,
}

/// The event as the matrix sees it.
struct Facts {
    happened: Happened,
    upstream_project: String,
    downstream_project: String,
    connection_id: String,
}

fn facts(e: &Envelope) -> anyhow::Result<Option<Facts>> {
    let of = |c: Option<cpb::Connection>, happened| {
        let c = c.unwrap_or_default();
        Some(Facts {
            happened,
            upstream_project: c.upstream_project_id,
            downstream_project: c.downstream_project_id,
            connection_id: c.id,
        })
    };
    let sync = |connection_id: String, up: String, down: String, happened| {
        Some(Facts {
            happened,
            upstream_project: up,
            downstream_project: down,
            connection_id,
        })
    };
    Ok(match e.event_type.rsplit('.').next().unwrap_or_default() {
        "ConnectionRequested" => {
            let m: cpb::ConnectionRequested = decode(e)?;
            of(
                m.connection,
                Happened::Requested {
                    requires_review: m.requires_review,
                },
            )
        }
        "ConnectionRejected" => {
            let m: cpb::ConnectionRejected = decode(e)?;
            of(m.connection, Happened::Rejected { message: m.message })
        }
        "ConnectionActivated" => {
            let m: cpb::ConnectionActivated = decode(e)?;
            of(m.connection, Happened::Created)
        }
        "ConnectionDisconnected" => {
            let m: cpb::ConnectionDisconnected = decode(e)?;
            of(m.connection, Happened::Disconnected { reason: m.reason })
        }
        "InitialSyncCompleted"
            if e.event_type == <rpb::InitialSyncCompleted as EventMessage>::EVENT_TYPE =>
        {
            let m: rpb::InitialSyncCompleted = decode(e)?;
            let h = Happened::InitialRfiSyncComplete {
                rfis: m.rfis_copied,
            };
            sync(
                m.connection_id,
                m.upstream_project_id,
                m.downstream_project_id,
                h,
            )
        }
        "InitialSyncCompleted"
            if e.event_type == <spb::InitialSyncCompleted as EventMessage>::EVENT_TYPE =>
        {
            let m: spb::InitialSyncCompleted = decode(e)?;
            let h = Happened::InitialSubmittalSyncComplete {
                submittals: m.submittals_copied,
            };
            sync(
                m.connection_id,
                m.upstream_project_id,
                m.downstream_project_id,
                h,
            )
        }
        "InitialSyncCompleted" => {
            let m: dpb::InitialSyncCompleted = decode(e)?;
            let h = Happened::InitialSyncComplete {
                drawings: m.drawings_copied,
                revisions: m.revisions_copied,
            };
            sync(
                m.connection_id,
                m.upstream_project_id,
                m.downstream_project_id,
                h,
            )
        }
        "DrawingsCopied" => {
            let m: dpb::DrawingsCopied = decode(e)?;
            let h = Happened::DrawingsPublished {
                revisions: m.revisions_copied,
            };
            sync(
                m.connection_id,
                m.upstream_project_id,
                m.downstream_project_id,
                h,
            )
        }
        "DrawingsDeletedUpstream" => {
            let m: dpb::DrawingsDeletedUpstream = decode(e)?;
            let h = Happened::DrawingsDeleted {
                numbers: m.drawing_numbers,
            };
            sync(
                m.connection_id,
                m.upstream_project_id,
                m.downstream_project_id,
                h,
            )
        }
        _ => None,
    })
}

fn level_tool(tool: Tool) -> LevelTool {
    match tool {
        Tool::Drawings => LevelTool::Drawings,
        Tool::Rfis => LevelTool::Rfis,
        Tool::Submittals => LevelTool::Submittals,
        Tool::ConnectionManager | Tool::Unspecified => LevelTool::ConnectionManager,
    }
}

impl NotificationEvents {
    async fn names(&self, f: &Facts) -> anyhow::Result<Names> {
        let project = |id: String| async move {
            self.directory
                .project(&id)
                .await
                .map(|p| p.unwrap_or_default())
        };
        let up = project(f.upstream_project.clone()).await?;
        let down = project(f.downstream_project.clone()).await?;
        let company = |id: String| async move {
            self.directory
                .company(&id)
                .await
                .map(|c| c.unwrap_or_default().name)
        };
        Ok(Names {
            upstream_company: company(up.company_id.clone()).await?,
            downstream_company: company(down.company_id.clone()).await?,
            upstream_project: up.name,
            downstream_project: down.name,
        })
    }

    /// Who is on `project`'s list for `tool` now.
    pub async fn resolve(
        &self,
        conn: &mut sqlx::AnyConnection,
        project: &str,
        tool: Tool,
    ) -> anyhow::Result<Vec<String>> {
        let members = self.directory.members(project).await?;
        let admins: Vec<String> = members
            .into_iter()
            .filter(|m| {
                let access = connectability_proto::directory::v1::ProjectAccess {
                    member: true,
                    permissions: m.permissions,
                    ..Default::default()
                };
                tool_level(&access, level_tool(tool)) == PermissionLevel::Admin
            })
            .map(|m| m.user_id)
            .collect();
        let setting = db::list_setting(conn, project, tool as i32).await?;
        let mut company_admins = Vec::new();
        if !setting.company_admins.is_empty() {
            let company = self
                .directory
                .project(project)
                .await?
                .unwrap_or_default()
                .company_id;
            for user in &setting.company_admins {
                if self
                    .directory
                    .company_access(&company, user)
                    .await?
                    .is_some_and(|a| a.company_admin)
                {
                    company_admins.push(user.clone());
                }
            }
        }
        Ok(recipients(
            &admins,
            setting.narrowed,
            &setting.selected_admins,
            &company_admins,
        ))
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[async_trait]
impl InboxHandler for NotificationEvents {
    async fn handle(&self, tx: &mut Tx, e: &Envelope) -> anyhow::Result<()> {
        let Some(f) = facts(e)? else { return Ok(()) };
        let planned = plan(&f.happened, &Names::default());
        if planned.is_empty() {
            return Ok(());
        }
        let names = self.names(&f).await?;
        let now = self.clock.now_ms();
        for p in plan(&f.happened, &names) {
            let project = match p.side {
                Side::Upstream => &f.upstream_project,
                Side::Downstream => &f.downstream_project,
            };
            let link = format!(
                "{}/projects/{project}/connections/{}",
                self.base_url.trim_end_matches('/'),
                f.connection_id
            );
            let text = format!("{}\n\nOpen: {link}\n", p.body);
            let html = format!(
                "<p>{}</p><p><a href=\"{link}\">Open in Connectability</a></p>",
                html_escape(&p.body).replace('\n', "<br>")
            );
            for recipient in self.resolve(tx, project, p.tool).await? {
                let email = self
                    .directory
                    .user(&recipient)
                    .await?
                    .map(|u| u.email)
                    .unwrap_or_default();
                let id = Id::generate("ntf").to_string();
                let traceparent = connectability_platform::telemetry::current_traceparent();
                db::add_notification(
                    tx,
                    &db::NewNotification {
                        id: &id,
                        recipient_id: &recipient,
                        event_id: &e.id,
                        kind: p.kind as i32,
                        subject: &p.subject,
                        body: &text,
                        html: &html,
                        project_id: project,
                        connection_id: &f.connection_id,
                        email: &email,
                        now_ms: now,
                        traceparent: traceparent.as_deref(),
                    },
                )
                .await?;
            }
        }
        self.mail.notify_one();
        Ok(())
    }
}
