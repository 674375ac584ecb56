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

/// Open `WatchSyncStatus` streams one replica serves at most: each polls the database, so
/// they are bounded like any other load.
pub const MAX_WATCHES: usize = 256;
/// Open streams one user may hold on one replica.
pub const MAX_WATCHES_PER_USER: usize = 8;
/// How often an open stream checks that its watcher still has access.
pub const RECHECK_ACCESS: Duration = Duration::from_secs(5);

static WATCHERS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, usize>>> =
    std::sync::LazyLock::new(Default::default);

/// One admitted stream; leaving the count when dropped.
struct Admission(String);

impl Admission {
    fn new(user: &str) -> Result<Self, Status> {
        let mut open = WATCHERS.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().sum();
        let mine = open.get(user).copied().unwrap_or(0);
        if total >= MAX_WATCHES {
            return Err(Status::resource_exhausted(format!(
                "this server already streams {MAX_WATCHES} sync statuses; use GetSyncStatus or retry later"
            )));
        }
        if mine >= MAX_WATCHES_PER_USER {
            return Err(Status::resource_exhausted(format!(
                "you already watch {MAX_WATCHES_PER_USER} sync statuses here; close one first"
            )));
        }
        *open.entry(user.to_string()).or_default() += 1;
        Ok(Self(user.to_string()))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = WATCHERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.0);
            }
        }
    }
}

/// Who watches, and how to tell they still may (checked again every [`RECHECK_ACCESS`]).
pub struct Watcher {
    pub user: String,
    pub directory: connectability_platform::directory::DirectoryGateway,
    /// The tool whose sync is watched (see [`crate::domain::may_watch_sync`]).
    pub tool: connectability_platform::directory::Tool,
}

impl Watcher {
    async fn still_may(
        &self,
        downstream_project_id: &str,
        connection_id: &str,
    ) -> Result<(), Status> {
        let access = self
            .directory
            .project_access(downstream_project_id, &self.user)
            .await?;
        if access.is_some_and(|a| crate::domain::may_watch_sync(&a, self.tool)) {
            Ok(())
        } else {
            Err(Status::not_found(format!(
                "connection sync `{connection_id}` not found"
            )))
        }
    }
}

/// Streams `first`, then every change of the connection's sync (state, totals, last copy)
/// until the caller hangs up, the sync stops, or the watcher loses access (the stream then
/// ends with NOT_FOUND); `to_pb` turns a row into the tool's message. At most
/// [`MAX_WATCHES`] streams per replica and [`MAX_WATCHES_PER_USER`] per user: more is
/// RESOURCE_EXHAUSTED.
pub fn watch<P: Send + 'static>(
    db: Db,
    clock: Arc<dyn Clock>,
    first: SyncRow,
    to_pb: fn(SyncRow, i64) -> P,
    watcher: Watcher,
) -> Result<impl Stream<Item = Result<P, Status>> + Send + 'static, Status> {
    let admission = Admission::new(&watcher.user)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let _admission = admission;
        let key = |s: &SyncRow| (s.state, s.items_total, s.items_copied, s.last_copy_ms);
        let mut last = first;
        let mut checked = tokio::time::Instant::now();
        if tx
            .send(Ok(to_pb(last.clone(), clock.now_ms())))
            .await
            .is_err()
        {
            return;
        }
        while last.state != SyncState::Stopped as i64 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if tx.is_closed() {
                return;
            }
            if checked.elapsed() >= RECHECK_ACCESS {
                checked = tokio::time::Instant::now();
                if let Err(e) = watcher
                    .still_may(&last.downstream_project_id, &last.connection_id)
                    .await
                {
                    // Access withdrawn (or the directory unreachable): the stream ends.
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
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
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}
