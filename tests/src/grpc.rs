//! Calling any RPC by its path with raw bytes: the hostile-input and authorization suites
//! reach every RPC of every service this way, from the reflection descriptor set.

use tonic::{Status, codec::Codec};

/// Passes bytes through unchanged: lets a client send anything as a request body.
#[derive(Clone, Default)]
pub struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// One RPC: its path and whether each side streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rpc {
    /// `/connectability.drawings.v1.DrawingService/GetDrawing`
    pub path: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

impl Rpc {
    /// `connectability.drawings.v1.DrawingService/GetDrawing`
    pub fn name(&self) -> &str {
        self.path.trim_start_matches('/')
    }
}

/// Every RPC of every Connectability service, from the reflection descriptor set.
pub fn every_rpc() -> Vec<Rpc> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(connectability_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut out = Vec::new();
    for file in set.file {
        let package = file.package().to_string();
        if !package.starts_with("connectability.") {
            continue;
        }
        for service in &file.service {
            for m in &service.method {
                out.push(Rpc {
                    path: format!("/{package}.{}/{}", service.name(), m.name()),
                    client_streaming: m.client_streaming(),
                    server_streaming: m.server_streaming(),
                });
            }
        }
    }
    out
}

/// Calls `rpc` with these encoded messages (one unless the client streams) and an optional
/// `authorization` value. A server stream answers with its first message; one that stays
/// open without a message for 500 ms (a watch) answers with none.
pub async fn call(
    channel: tonic::transport::Channel,
    rpc: &Rpc,
    mut messages: Vec<Vec<u8>>,
    authorization: Option<&str>,
) -> Result<Vec<Vec<u8>>, Status> {
    use std::str::FromStr;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_str(&rpc.path).expect("an RPC path");
    let authorize = |md: &mut tonic::metadata::MetadataMap| {
        if let Some(a) = authorization {
            md.insert("authorization", a.parse().expect("ASCII authorization"));
        }
    };
    let first = if messages.is_empty() {
        Vec::new()
    } else {
        messages.remove(0)
    };
    match (rpc.client_streaming, rpc.server_streaming) {
        (false, false) => {
            let mut req = tonic::Request::new(first);
            authorize(req.metadata_mut());
            Ok(vec![grpc.unary(req, path, Raw).await?.into_inner()])
        }
        (true, false) => {
            let mut all = vec![first];
            all.extend(messages);
            let mut req = tonic::Request::new(tokio_stream::iter(all));
            authorize(req.metadata_mut());
            Ok(vec![
                grpc.client_streaming(req, path, Raw).await?.into_inner(),
            ])
        }
        (false, true) => {
            let mut req = tonic::Request::new(first);
            authorize(req.metadata_mut());
            let mut stream = grpc.server_streaming(req, path, Raw).await?.into_inner();
            match tokio::time::timeout(std::time::Duration::from_millis(500), stream.message())
                .await
            {
                Ok(Ok(Some(m))) => Ok(vec![m]),
                Ok(Ok(None)) | Err(_) => Ok(Vec::new()),
                Ok(Err(s)) => Err(s),
            }
        }
        (true, true) => {
            let mut all = vec![first];
            all.extend(messages);
            let mut req = tonic::Request::new(tokio_stream::iter(all));
            authorize(req.metadata_mut());
            let mut stream = grpc.streaming(req, path, Raw).await?.into_inner();
            Ok(stream.message().await?.into_iter().collect())
        }
    }
}
