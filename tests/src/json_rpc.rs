//! Calling any RPC with a JSON body (proto field names, the proto3 JSON mapping), the way
//! grpcurl does, through the reflection descriptor set: one table of requests can then reach
//! every RPC of every service.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, SerializeOptions};
use tonic::Status;

use crate::grpc::{Rpc, call};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(connectability_proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes")
    })
}

/// The method named `package.Service/Method`.
pub fn method(name: &str) -> MethodDescriptor {
    let (service, method) = name.split_once('/').expect("package.Service/Method");
    pool()
        .get_service_by_name(service)
        .unwrap_or_else(|| panic!("no service {service}"))
        .methods()
        .find(|m| m.name() == method)
        .unwrap_or_else(|| panic!("no method {name}"))
}

/// Encodes a JSON request (an array of them for a client stream).
pub fn encode(name: &str, json: &serde_json::Value) -> Vec<Vec<u8>> {
    let m = method(name);
    let one = |v: &serde_json::Value| {
        DynamicMessage::deserialize(m.input(), v.clone())
            .unwrap_or_else(|e| panic!("{name}: request {v}: {e}"))
            .encode_to_vec()
    };
    match json {
        serde_json::Value::Array(all) if m.is_client_streaming() => all.iter().map(one).collect(),
        v => vec![one(v)],
    }
}

/// Calls `name` with a JSON request as `authorization` (a `Bearer …` value, or none);
/// answers the (first) response as JSON with proto field names.
pub async fn json_call(
    channel: tonic::transport::Channel,
    name: &str,
    json: &serde_json::Value,
    authorization: Option<&str>,
) -> Result<serde_json::Value, Status> {
    let m = method(name);
    let rpc = Rpc {
        path: format!("/{name}"),
        client_streaming: m.is_client_streaming(),
        server_streaming: m.is_server_streaming(),
    };
    let answers = call(channel, &rpc, encode(name, json), authorization).await?;
    let Some(first) = answers.first() else {
        return Ok(serde_json::Value::Null);
    };
    let msg = DynamicMessage::decode(m.output(), first.as_slice())
        .map_err(|e| Status::internal(format!("{name}: response: {e}")))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| Status::internal(e.to_string()))
}
