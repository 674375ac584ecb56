//! Sync status as the tools' `GetSyncStatus` / `WatchSyncStatus` serve it.

use std::{future::Future, sync::Arc, time::Duration};

use connectability_platform::clock::Clock;
use connectability_store::Db;
use futures::Stream;
use tonic::Status;

use crate::{SyncRow, SyncState, db};

/// Milliseconds since the last copy while backfilling; zero once caught up.
pub fn lag_ms(s: &SyncRow, now_ms: i64) -> i64 {
    if s.state == SyncState::Backfilling as i64 {
        (now_ms - s.last_copy_ms.unwrap_or(s.update_ms)).max(0)
    } else {
        0
    }
}

/// [`lag_ms`] as the tools' `SyncStatus.lag`.
pub fn lag(s: &SyncRow, now_ms: i64) -> prost_types::Duration {
    let lag_ms = lag_ms(s, now_ms);
    prost_types::Duration {
        seconds: lag_ms / 1000,
        nanos: ((lag_ms % 1000) * 1_000_000) as i32,
    }
}

/// Runs `lookup` until it answers something other than NOT_FOUND, for up to 5 s: right
/// after a connection is made its events may still be on their way to the tool service.
pub async fn first<F, Fut>(mut lookup: F) -> Result<SyncRow, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<SyncRow, Status>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match lookup().await {
            Err(e)
                if e.code() == tonic::Code::NotFound && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Streams `first`, then every change of the connection's sync (state, totals, last copy)
/// until the caller hangs up or the sync stops; `to_pb` turns a row into the tool's message.
pub fn watch<P: Send + 'static>(
    db: Db,
    clock: Arc<dyn Clock>,
    first: SyncRow,
    to_pb: fn(SyncRow, i64) -> P,
) -> impl Stream<Item = Result<P, Status>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let key = |s: &SyncRow| (s.state, s.items_total, s.items_copied, s.last_copy_ms);
        let mut last = first;
        if tx
            .send(Ok(to_pb(last.clone(), clock.now_ms())))
            .await
            .is_err()
        {
            return;
        }
        while last.state != SyncState::Stopped as i64 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let row = match db.pool().acquire().await {
                Ok(mut conn) => db::get_sync(&mut conn, &last.connection_id).await,
                Err(e) => Err(e),
            };
            let Ok(Some(row)) = row else { continue };
            if key(&row) != key(&last) {
                if tx
                    .send(Ok(to_pb(row.clone(), clock.now_ms())))
                    .await
                    .is_err()
                {
                    return;
                }
                last = row;
            } else if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
