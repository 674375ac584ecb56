//! What the sync services ask connection-manager over gRPC, with their own identity: the
//! current state of a connection an event names, so that copying starts or stops only for a
//! connection connection-manager really holds in that state (a forged or replayed event on
//! the bus copies and deletes nothing).

use crate::telemetry::ServiceCall;
use connectability_proto::connections::v1::{
    Connection, GetConnectionRequest, connection_service_client::ConnectionServiceClient,
};
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

#[derive(Clone)]
pub struct ConnectionsGateway {
    client: ConnectionServiceClient<InterceptedService<Channel, ServiceCall>>,
}

impl ConnectionsGateway {
    pub fn new(
        channel: Channel,
        service_token: impl Into<crate::service_identity::ServiceToken>,
    ) -> Self {
        crate::service_identity::calls_peer("connection-manager");
        Self {
            client: ConnectionServiceClient::new(InterceptedService::new(
                channel,
                ServiceCall::new(service_token),
            )),
        }
    }

    /// The connection as connection-manager holds it now; `None` if it has no such
    /// connection. Failures read as [`crate::service_identity::peer_failure`] says.
    pub async fn current(&self, id: &str) -> Result<Option<Connection>, Status> {
        let request = GetConnectionRequest { id: id.to_string() };
        match self.client.clone().get_connection(request).await {
            Ok(r) => Ok(Some(r.into_inner())),
            // A malformed id (a forged event's, say) names no connection either.
            Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => Ok(None),
            Err(s) => Err(crate::service_identity::peer_failure(
                "connection-manager",
                s,
            )),
        }
    }
}
