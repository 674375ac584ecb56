//! The one question the connection manager asks drawings-sync (C17), over gRPC with its
//! service identity.

use connectability_auth::BearerToken;
use connectability_proto::drawings::v1::{
    GetPublishedRevisionCountRequest, PublishedRevisionCount,
    drawing_service_client::DrawingServiceClient,
};
use tonic::{Status, service::interceptor::InterceptedService, transport::Channel};

#[derive(Clone)]
pub struct DrawingsGateway {
    client: DrawingServiceClient<InterceptedService<Channel, BearerToken>>,
}

impl DrawingsGateway {
    pub fn new(channel: Channel, service_token: &str) -> Self {
        Self {
            client: DrawingServiceClient::new(InterceptedService::new(
                channel,
                BearerToken::new(service_token),
            )),
        }
    }

    /// How many published revisions the project has, and the limit (C17).
    pub async fn published_revisions(
        &self,
        project_id: &str,
    ) -> Result<PublishedRevisionCount, Status> {
        self.client
            .clone()
            .get_published_revision_count(GetPublishedRevisionCountRequest { project_id: project_id.to_string() })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| {
                tracing::warn!(code = ?s.code(), message = s.message(), "drawings-sync call failed");
                Status::unavailable(format!("drawings service: {}", s.message()))
            })
    }
}
