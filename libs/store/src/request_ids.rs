//! Safe retries (AIP-155): a mutation with a `request_id` stores its response in the same
//! transaction as its effect; a retry with the same id gets that response back.

use sqlx::Row;

use sqlx::AnyConnection;

use crate::{Tx, now_ms};

/// The stored response of an earlier call with this request id, if any.
pub async fn find(
    conn: &mut AnyConnection,
    scope: &str,
    request_id: &str,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let row = sqlx::query("SELECT response FROM request_ids WHERE scope = $1 AND request_id = $2")
        .bind(scope)
        .bind(request_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| r.try_get("response")).transpose()
}

/// Records the response. Returns false when another call with the same id got there first
/// (the caller then rolls back and answers with [`find`]'s response).
pub async fn record(
    tx: &mut Tx,
    scope: &str,
    request_id: &str,
    response: Vec<u8>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO request_ids (scope, request_id, response, created_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (scope, request_id) DO NOTHING",
    )
    .bind(scope)
    .bind(request_id)
    .bind(response)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
