//! The questions other services ask drawings-sync over gRPC, with the asking service's
//! identity: revision counts for the connection manager (C17), and a linked revision's file
//! for rfi-sync (an RFI's linked drawings PDF).

use crate::telemetry::ServiceCall;
use connectability_proto::drawings::v1::{
    DownloadRevisionFileRequest, File, GetPublishedRevisionCountRequest, PublishedRevisionCount,
    download_file_response::Part, drawing_service_client::DrawingServiceClient,
};
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

#[derive(Clone)]
pub struct DrawingsGateway {
    client: DrawingServiceClient<InterceptedService<Channel, ServiceCall>>,
}

fn unavailable(s: Status) -> Status {
    tracing::warn!(code = ?s.code(), message = s.message(), "drawings-sync call failed");
    Status::unavailable(format!("drawings service: {}", s.message()))
}

impl DrawingsGateway {
    pub fn new(channel: Channel, service_token: &str) -> Self {
        Self {
            client: DrawingServiceClient::new(InterceptedService::new(
                channel,
                ServiceCall::new(service_token),
            ))
            .max_decoding_message_size(usize::MAX),
        }
    }

    /// How many published revisions the project has, and the limit (C17).
    pub async fn published_revisions(
        &self,
        project_id: &str,
    ) -> Result<PublishedRevisionCount, Status> {
        self.client
            .clone()
            .get_published_revision_count(GetPublishedRevisionCountRequest {
                project_id: project_id.to_string(),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(unavailable)
    }

    /// The revision's file and its bytes; `None` when the project has no such revision.
    pub async fn revision_file(
        &self,
        project_id: &str,
        revision_id: &str,
    ) -> Result<Option<(File, Vec<u8>)>, Status> {
        let request = DownloadRevisionFileRequest {
            project_id: project_id.into(),
            revision_id: revision_id.into(),
        };
        let mut stream = match self.client.clone().download_revision_file(request).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(unavailable(s)),
        };
        let (mut file, mut bytes) = (File::default(), Vec::new());
        while let Some(msg) = stream.message().await.map_err(unavailable)? {
            match msg.part {
                Some(Part::File(f)) => file = f,
                Some(Part::Chunk(c)) => bytes.extend_from_slice(&c),
                None => {}
            }
        }
        Ok(Some((file, bytes)))
    }
}
