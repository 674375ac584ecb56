//! The questions other services ask drawings-sync over gRPC, with the asking service's
//! identity: revision counts for the connection manager (C17), and a linked revision's file
//! for rfi-sync (an RFI's linked drawings PDF).

use crate::telemetry::ServiceCall;
use connectability_proto::drawings::v1::{
    DownloadFileResponse, DownloadRevisionFileRequest, File, GetPublishedRevisionCountRequest,
    PublishedRevisionCount, download_file_response::Part,
    drawing_service_client::DrawingServiceClient,
};
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

#[derive(Clone)]
pub struct DrawingsGateway {
    client: DrawingServiceClient<InterceptedService<Channel, ServiceCall>>,
}

fn failed_call(s: Status) -> Status {
    crate::service_identity::peer_failure("drawings-sync", s)
}

impl DrawingsGateway {
    pub fn new(
        channel: Channel,
        service_token: impl Into<crate::service_identity::ServiceToken>,
    ) -> Self {
        crate::service_identity::calls_peer("drawings-sync");
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
            .map_err(failed_call)
    }

    /// The revision's file and its bytes, read on behalf of `user_id`; `None` when the
    /// project has no such revision that the user may see in Drawings. More than `max_bytes`
    /// is refused with RESOURCE_EXHAUSTED before the rest arrives.
    pub async fn revision_file(
        &self,
        project_id: &str,
        revision_id: &str,
        user_id: &str,
        max_bytes: usize,
    ) -> Result<Option<(File, Vec<u8>)>, Status> {
        let Some(mut stream) = self.open(project_id, revision_id, user_id, false).await? else {
            return Ok(None);
        };
        let (mut file, mut bytes) = (File::default(), Vec::new());
        while let Some(msg) = stream.message().await.map_err(failed_call)? {
            match msg.part {
                Some(Part::File(f)) => {
                    if usize::try_from(f.size_bytes).unwrap_or(usize::MAX) > max_bytes {
                        return Err(too_large(revision_id, max_bytes));
                    }
                    file = f
                }
                Some(Part::Chunk(c)) => {
                    if bytes.len() + c.len() > max_bytes {
                        return Err(too_large(revision_id, max_bytes));
                    }
                    bytes.extend_from_slice(&c)
                }
                None => {}
            }
        }
        Ok(Some((file, bytes)))
    }

    /// The revision's file metadata if `user_id` may see the revision in Drawings.
    pub async fn visible_revision(
        &self,
        project_id: &str,
        revision_id: &str,
        user_id: &str,
    ) -> Result<Option<File>, Status> {
        let Some(mut stream) = self.open(project_id, revision_id, user_id, true).await? else {
            return Ok(None);
        };
        while let Some(msg) = stream.message().await.map_err(failed_call)? {
            if let Some(Part::File(f)) = msg.part {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    async fn open(
        &self,
        project_id: &str,
        revision_id: &str,
        user_id: &str,
        metadata_only: bool,
    ) -> Result<Option<tonic::Streaming<DownloadFileResponse>>, Status> {
        let request = DownloadRevisionFileRequest {
            project_id: project_id.into(),
            revision_id: revision_id.into(),
            user_id: user_id.into(),
            metadata_only,
        };
        match self.client.clone().download_revision_file(request).await {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(failed_call(s)),
        }
    }
}

fn too_large(revision_id: &str, max_bytes: usize) -> Status {
    Status::resource_exhausted(format!(
        "linked drawing revision `{revision_id}` would take the linked drawings past {max_bytes} bytes in all"
    ))
}
