//! What services ask the directory, over gRPC with their service identity (never the
//! directory's tables), with a short cache; and the level checks every service makes.

use std::time::Duration;

use crate::telemetry::ServiceCall;
use connectability_proto::directory::v1::{
    self as pb, PermissionLevel, ProjectAccess, ToolPermissions,
    directory_service_client::DirectoryServiceClient,
};
use tonic::{Code, Request, Status, service::interceptor::InterceptedService, transport::Channel};

type Client = DirectoryServiceClient<InterceptedService<Channel, ServiceCall>>;

/// A lazily connecting channel to another service, e.g. `http://directory:50051`, or over
/// TLS with `https://directory:50051` (verified against GRPC_TLS_CA_FILE).
pub fn channel(url: &str) -> anyhow::Result<Channel> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if url.starts_with("https://") {
        let host = endpoint.uri().host().unwrap_or_default().to_string();
        endpoint = endpoint.tls_config(crate::tls::client_config(&host)?)?;
    }
    Ok(endpoint.connect_lazy())
}

#[derive(Clone)]
pub struct DirectoryGateway {
    client: Client,
    /// Plain channel for calls made with the caller's own token.
    channel: Channel,
    access: Option<moka::future::Cache<(String, String), Option<pb::ProjectAccess>>>,
    companies: Option<moka::future::Cache<String, Option<pb::Company>>>,
}

/// NOT_FOUND becomes `None`; any other failure is read as every gateway reads it.
fn found<T>(result: Result<tonic::Response<T>, Status>) -> Result<Option<T>, Status> {
    match result {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(crate::service_identity::peer_failure("directory", s)),
    }
}

impl DirectoryGateway {
    /// `cache_ttl` zero disables caching (tests change permissions and look at once).
    pub fn new(
        channel: Channel,
        service_token: impl Into<crate::service_identity::ServiceToken>,
        cache_ttl: Duration,
    ) -> Self {
        let client = DirectoryServiceClient::new(InterceptedService::new(
            channel.clone(),
            ServiceCall::new(service_token),
        ));
        crate::service_identity::calls_peer("directory");
        let cache = |_: ()| !cache_ttl.is_zero();
        Self {
            client,
            channel,
            access: cache(()).then(|| {
                moka::future::Cache::builder()
                    .time_to_live(cache_ttl)
                    .max_capacity(100_000)
                    .build()
            }),
            companies: cache(()).then(|| {
                moka::future::Cache::builder()
                    .time_to_live(cache_ttl)
                    .max_capacity(10_000)
                    .build()
            }),
        }
    }

    /// What `user_id` may do in `project_id`; `None` if the project or user does not exist.
    pub async fn project_access(
        &self,
        project_id: &str,
        user_id: &str,
    ) -> Result<Option<pb::ProjectAccess>, Status> {
        let key = (project_id.to_string(), user_id.to_string());
        if let Some(hit) = match &self.access {
            Some(c) => c.get(&key).await,
            None => None,
        } {
            return Ok(hit);
        }
        let answer = found(
            self.client
                .clone()
                .get_project_access(pb::GetProjectAccessRequest {
                    project_id: project_id.to_string(),
                    user_id: user_id.to_string(),
                })
                .await,
        )?;
        if let Some(c) = &self.access {
            c.insert(key, answer.clone()).await;
        }
        Ok(answer)
    }

    pub async fn company(&self, id: &str) -> Result<Option<pb::Company>, Status> {
        if let Some(hit) = match &self.companies {
            Some(c) => c.get(id).await,
            None => None,
        } {
            return Ok(hit);
        }
        let answer = found(
            self.client
                .clone()
                .get_company(pb::GetCompanyRequest { id: id.to_string() })
                .await,
        )?;
        if let Some(c) = &self.companies {
            c.insert(id.to_string(), answer.clone()).await;
        }
        Ok(answer)
    }

    pub async fn company_access(
        &self,
        company_id: &str,
        user_id: &str,
    ) -> Result<Option<pb::CompanyAccess>, Status> {
        found(
            self.client
                .clone()
                .get_company_access(pb::GetCompanyAccessRequest {
                    company_id: company_id.to_string(),
                    user_id: user_id.to_string(),
                })
                .await,
        )
    }

    pub async fn project(&self, id: &str) -> Result<Option<pb::Project>, Status> {
        found(
            self.client
                .clone()
                .get_project(pb::GetProjectRequest { id: id.to_string() })
                .await,
        )
    }

    /// Every member of a project's directory, with their levels.
    pub async fn members(&self, project_id: &str) -> Result<Vec<pb::ProjectMember>, Status> {
        let mut members = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = found(
                self.client
                    .clone()
                    .list_project_members(pb::ListProjectMembersRequest {
                        project_id: project_id.to_string(),
                        page_size: 1000,
                        page_token: page_token.clone(),
                    })
                    .await,
            )?
            .unwrap_or_default();
            members.extend(page.members);
            if page.next_page_token.is_empty() {
                return Ok(members);
            }
            page_token = page.next_page_token;
        }
    }

    pub async fn user(&self, id: &str) -> Result<Option<pb::User>, Status> {
        found(
            self.client
                .clone()
                .get_user(pb::GetUserRequest { id: id.to_string() })
                .await,
        )
    }

    /// The projects whose directory lists the caller, asked with the caller's own token.
    pub async fn member_projects(
        &self,
        authorization: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    ) -> Result<Vec<pb::Project>, Status> {
        let mut client = DirectoryServiceClient::new(self.channel.clone());
        let mut projects = Vec::new();
        let mut page_token = String::new();
        loop {
            let mut req = Request::new(pb::ListProjectsRequest {
                page_size: 1000,
                page_token: page_token.clone(),
                member_only: true,
                ..Default::default()
            });
            req.metadata_mut()
                .insert("authorization", authorization.clone());
            crate::telemetry::inject_traceparent(&mut req);
            let page = found(client.list_projects(req).await)?.unwrap_or_default();
            projects.extend(page.projects);
            if page.next_page_token.is_empty() {
                return Ok(projects);
            }
            page_token = page.next_page_token;
        }
    }
}

/// A tool whose level the directory keeps per member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    ConnectionManager,
    Drawings,
    Rfis,
    Submittals,
}

impl Tool {
    /// The tool's name as people read it.
    pub fn label(self) -> &'static str {
        match self {
            Tool::ConnectionManager => "Connection Manager",
            Tool::Drawings => "Drawings",
            Tool::Rfis => "RFIs",
            Tool::Submittals => "Submittals",
        }
    }
}

impl DirectoryGateway {
    /// A user's access to a project they may see (else NOT_FOUND, the same as for a project
    /// that does not exist), with at least `min` on `tool` (else PERMISSION_DENIED).
    pub async fn tool_access(
        &self,
        user_id: &str,
        project_id: &str,
        tool: Tool,
        min: PermissionLevel,
    ) -> Result<ProjectAccess, Status> {
        let access = self
            .project_access(project_id, user_id)
            .await?
            .filter(sees_project)
            .ok_or_else(|| crate::errors::not_found("project", project_id))?;
        if !at_least(tool_level(&access, tool), min) {
            return Err(crate::errors::permission_denied(format!(
                "you need at least {} on {} in this project",
                min.as_str_name().trim_start_matches("PERMISSION_LEVEL_"),
                tool.label()
            )));
        }
        Ok(access)
    }
}

/// The user's level on a tool in a project (NONE unless a directory member).
pub fn tool_level(access: &ProjectAccess, tool: Tool) -> PermissionLevel {
    if !access.member {
        return PermissionLevel::None;
    }
    let perms: ToolPermissions = access.permissions.unwrap_or_default();
    let raw = match tool {
        Tool::ConnectionManager => perms.connection_manager,
        Tool::Drawings => perms.drawings,
        Tool::Rfis => perms.rfis,
        Tool::Submittals => perms.submittals,
    };
    PermissionLevel::try_from(raw).unwrap_or(PermissionLevel::None)
}

/// At least `min` (NONE < READ_ONLY < STANDARD < ADMIN).
pub fn at_least(level: PermissionLevel, min: PermissionLevel) -> bool {
    level as i32 >= min as i32
}

/// May see a project at all (Y3): a directory member, or a company admin of its company.
pub fn sees_project(access: &ProjectAccess) -> bool {
    access.member || access.company_admin
}
