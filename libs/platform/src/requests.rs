//! Idempotent creates and partial updates, the same in every service: a create with a
//! `request_id` answers a repeat with the first call's answer (AIP-155), and an update
//! names the fields it changes in `update_mask` (AIP-134).

use connectability_events::Envelope;
use connectability_store::{Tx, outbox::RelayWaker, request_ids};
use prost::Message;
use sqlx::AnyConnection;
use tonic::Status;

use crate::errors::{internal, invalid_argument};

/// The answer an earlier call with `request_id` got in `scope` (method and caller), if
/// there was one.
pub async fn earlier<M: Message + Default>(
    conn: &mut AnyConnection,
    scope: &str,
    request_id: Option<&str>,
) -> Result<Option<M>, Status> {
    let Some(rid) = request_id else {
        return Ok(None);
    };
    match request_ids::find(conn, scope, rid)
        .await
        .map_err(internal)?
    {
        Some(bytes) => Ok(Some(M::decode(bytes.as_slice()).map_err(internal)?)),
        None => Ok(None),
    }
}

/// Commits a create's transaction with its events and, under `request_id`, its `answer`;
/// ABORTED when a concurrent call with the same request id committed first (a retry then
/// gets that call's answer).
pub async fn commit_once<M: Message>(
    tx: Tx,
    events: &[Envelope],
    scope: &str,
    request_id: Option<&str>,
    answer: &M,
    relay: &RelayWaker,
) -> Result<(), Status> {
    let request = request_id.map(|rid| (scope, rid, answer.encode_to_vec()));
    if connectability_store::commit(tx, events, request, relay)
        .await
        .map_err(internal)?
    {
        Ok(())
    } else {
        Err(Status::aborted(
            "a concurrent call with the same request_id won; retry to get its result",
        ))
    }
}

/// What an empty `update_mask` means for a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyMask {
    /// Every updatable field (AIP-134's default).
    AllFields,
    /// Refused: the caller must name the fields.
    Refused,
}

/// The paths of an update's field mask, each one of `updatable` (else INVALID_ARGUMENT on
/// `update_mask` naming the path and what may be updated), repeats dropped.
pub fn field_mask(
    mask: Option<prost_types::FieldMask>,
    updatable: &[&'static str],
    empty: EmptyMask,
) -> Result<Vec<&'static str>, Status> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return match empty {
            EmptyMask::AllFields => Ok(updatable.to_vec()),
            EmptyMask::Refused => Err(invalid_argument(
                "update_mask",
                "name at least one field to change",
            )),
        };
    }
    let mut out: Vec<&'static str> = Vec::new();
    for path in &paths {
        let Some(known) = updatable.iter().find(|u| **u == path.as_str()) else {
            return Err(invalid_argument(
                "update_mask",
                format!(
                    "`{path}` cannot be updated; updatable: {}",
                    updatable.join(", ")
                ),
            ));
        };
        if !out.contains(known) {
            out.push(known);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_masks_name_known_fields_only() {
        let mask = |p: &[&str]| {
            Some(prost_types::FieldMask {
                paths: p.iter().map(|s| s.to_string()).collect(),
            })
        };
        assert_eq!(
            field_mask(mask(&["b", "a", "b"]), &["a", "b"], EmptyMask::Refused).unwrap(),
            vec!["b", "a"]
        );
        assert_eq!(
            field_mask(None, &["a", "b"], EmptyMask::AllFields).unwrap(),
            vec!["a", "b"]
        );
        let refused = field_mask(None, &["a"], EmptyMask::Refused).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        let unknown = field_mask(mask(&["c"]), &["a"], EmptyMask::Refused).unwrap_err();
        assert_eq!(
            crate::errors::bad_field(&unknown).as_deref(),
            Some("update_mask")
        );
        assert!(unknown.message().contains("`c`"), "{unknown:?}");
    }
}
