//! The one question rfi-sync asks drawings-sync: a linked revision's file, for the linked
//! drawings PDF, over gRPC with the service identity.

use connectability_auth::BearerToken;
use connectability_proto::drawings::v1::{
    DownloadRevisionFileRequest, File, download_file_response::Part,
    drawing_service_client::DrawingServiceClient,
};
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

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
            ))
            .max_decoding_message_size(usize::MAX),
        }
    }

    /// The revision's file and its bytes; `None` when the project has no such revision.
    pub async fn revision_file(
        &self,
        project_id: &str,
        revision_id: &str,
    ) -> Result<Option<(File, Vec<u8>)>, Status> {
        let unavailable = |s: Status| {
            tracing::warn!(code = ?s.code(), message = s.message(), "drawings-sync call failed");
            Status::unavailable(format!("drawings service: {}", s.message()))
        };
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
