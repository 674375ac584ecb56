//! `connectability sync status|watch`: where a connection's sync stands, asked of a running
//! server over gRPC the way any client asks (`GetConnection`, then each feature's
//! `GetSyncStatus` or `WatchSyncStatus`). `watch` draws a progress bar per feature on a
//! terminal and prints one line per change otherwise (logs, CI).

use std::{collections::BTreeMap, io::IsTerminal, time::Duration};

use anyhow::Context as _;
use connectability_proto::{
    connections::v1::{self as cpb, Feature, connection_service_client::ConnectionServiceClient},
    drawings::v1::{self as dpb, drawing_service_client::DrawingServiceClient},
    rfis::v1::{self as rpb, rfi_service_client::RfiServiceClient},
    submittals::v1::{self as spb, submittal_service_client::SubmittalServiceClient},
};
use futures::{Stream, StreamExt, stream::BoxStream};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use connectability_auth::BearerToken;

#[derive(clap::Subcommand)]
pub enum SyncCommand {
    /// Print each feature's sync of a connection once, as a table.
    Status(SyncArgs),
    /// Follow a connection's sync live: a progress bar per feature (items copied / total,
    /// rate, lag) until every feature is in sync. Ctrl-C stops watching; the sync goes on.
    Watch {
        #[command(flatten)]
        args: SyncArgs,
        /// Keep watching after every feature is in sync (later publishes show as they copy).
        #[arg(long)]
        follow: bool,
    },
}

#[derive(clap::Args)]
pub struct SyncArgs {
    /// The connection (`con_…`).
    #[arg(long)]
    connection: String,
    /// A bearer token of a user who may see the connection (`connectability token --user …`).
    #[arg(long, env = "CONNECTABILITY_TOKEN", hide_env_values = true)]
    token: String,
    /// Where the services answer: one address for `connectability dev`, or each service's
    /// own with the flags below.
    #[arg(
        long,
        env = "CONNECTABILITY_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// connection-manager, if not at --server.
    #[arg(long)]
    connections_url: Option<String>,
    /// drawings-sync, if not at --server.
    #[arg(long)]
    drawings_url: Option<String>,
    /// rfi-sync, if not at --server.
    #[arg(long)]
    rfis_url: Option<String>,
    /// submittal-sync, if not at --server.
    #[arg(long)]
    submittals_url: Option<String>,
}

/// A feature's sync, whichever tool answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub state: State,
    pub total: i64,
    pub copied: i64,
    pub lag: Duration,
}

impl Progress {
    /// Nothing more to wait for: stopped, or in sync with every item copied (a connection in
    /// sync may still be copying a publish).
    pub fn settled(&self) -> bool {
        match self.state {
            // A parked copy waits for an operator: watching longer changes nothing.
            State::Stopped | State::Failed => true,
            State::InSync => self.copied >= self.total,
            State::Backfilling | State::Unknown => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Backfilling,
    InSync,
    Stopped,
    Failed,
    Unknown,
}

impl State {
    /// The tools share the numbering of `SyncState`.
    fn from_i32(state: i32) -> Self {
        match state {
            1 => State::Backfilling,
            2 => State::InSync,
            3 => State::Stopped,
            4 => State::Failed,
            _ => State::Unknown,
        }
    }

    fn label(self) -> &'static str {
        match self {
            State::Backfilling => "backfilling",
            State::InSync => "in sync",
            State::Stopped => "stopped",
            State::Failed => "FAILED: a copy is parked (connectability dead-letters)",
            State::Unknown => "unknown",
        }
    }
}

/// Every tool answers with the shared `connectability.sync.v1.SyncStatus`.
impl From<connectability_proto::sync::v1::SyncStatus> for Progress {
    fn from(s: connectability_proto::sync::v1::SyncStatus) -> Self {
        let lag = s.lag.unwrap_or_default();
        Progress {
            state: State::from_i32(s.state),
            total: s.items_total,
            copied: s.items_copied,
            lag: Duration::new(lag.seconds.max(0) as u64, lag.nanos.max(0) as u32),
        }
    }
}

fn feature_name(f: Feature) -> &'static str {
    match f {
        Feature::Drawings => "drawings",
        Feature::Rfis => "rfis",
        Feature::Submittals => "submittals",
        Feature::Unspecified => "unspecified",
    }
}

/// The table `sync status` prints.
pub fn status_table(connection: &str, rows: &[(&'static str, Progress)]) -> String {
    let mut out = format!("connection {connection}\n");
    out.push_str(&format!(
        "{:<12} {:<12} {:>17} {:>9}\n",
        "FEATURE", "STATE", "COPIED / TOTAL", "LAG"
    ));
    for (feature, p) in rows {
        out.push_str(&format!(
            "{:<12} {:<12} {:>17} {:>9}\n",
            feature,
            p.state.label(),
            format!("{} / {}", p.copied, p.total),
            format!("{:.1}s", p.lag.as_secs_f64())
        ));
    }
    out
}

type Authed = InterceptedService<Channel, BearerToken>;

struct Clients {
    args: SyncArgs,
}

impl Clients {
    fn channel(&self, url: &Option<String>) -> anyhow::Result<Authed> {
        let url = url.as_deref().unwrap_or(&self.args.server);
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .with_context(|| format!("`{url}` is not a server URL (http://host:port)"))?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(InterceptedService::new(
            channel,
            BearerToken::new(&self.args.token),
        ))
    }

    /// The connection's features, in the order the tools are listed.
    async fn features(&self) -> anyhow::Result<Vec<Feature>> {
        let connection: cpb::Connection =
            ConnectionServiceClient::new(self.channel(&self.args.connections_url)?)
                .get_connection(cpb::GetConnectionRequest {
                    id: self.args.connection.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
        let mut features: Vec<Feature> = connection
            .features()
            .filter(|f| *f != Feature::Unspecified)
            .collect();
        features.sort_by_key(|f| *f as i32);
        features.dedup();
        Ok(features)
    }

    async fn status(&self, feature: Feature) -> anyhow::Result<Progress> {
        let id = self.args.connection.clone();
        Ok(match feature {
            Feature::Drawings => DrawingServiceClient::new(self.channel(&self.args.drawings_url)?)
                .get_sync_status(dpb::GetSyncStatusRequest { connection_id: id })
                .await
                .map_err(status_error)?
                .into_inner()
                .into(),
            Feature::Rfis => RfiServiceClient::new(self.channel(&self.args.rfis_url)?)
                .get_sync_status(rpb::GetSyncStatusRequest { connection_id: id })
                .await
                .map_err(status_error)?
                .into_inner()
                .into(),
            Feature::Submittals => {
                SubmittalServiceClient::new(self.channel(&self.args.submittals_url)?)
                    .get_sync_status(spb::GetSyncStatusRequest { connection_id: id })
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .into()
            }
            Feature::Unspecified => anyhow::bail!("the connection names no feature"),
        })
    }

    async fn watch(&self, feature: Feature) -> anyhow::Result<BoxStream<'static, Progress>> {
        fn progress<S, M>(s: S) -> BoxStream<'static, Progress>
        where
            S: Stream<Item = Result<M, tonic::Status>> + Send + 'static,
            M: Into<Progress> + Send + 'static,
        {
            s.filter_map(|m| async move { m.ok().map(Into::into) })
                .boxed()
        }
        let id = self.args.connection.clone();
        Ok(match feature {
            Feature::Drawings => progress(
                DrawingServiceClient::new(self.channel(&self.args.drawings_url)?)
                    .watch_sync_status(dpb::WatchSyncStatusRequest { connection_id: id })
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            ),
            Feature::Rfis => progress(
                RfiServiceClient::new(self.channel(&self.args.rfis_url)?)
                    .watch_sync_status(rpb::WatchSyncStatusRequest { connection_id: id })
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            ),
            Feature::Submittals => progress(
                SubmittalServiceClient::new(self.channel(&self.args.submittals_url)?)
                    .watch_sync_status(spb::WatchSyncStatusRequest { connection_id: id })
                    .await
                    .map_err(status_error)?
                    .into_inner(),
            ),
            Feature::Unspecified => anyhow::bail!("the connection names no feature"),
        })
    }
}

/// A gRPC error as a person reads it: the code and the server's message.
fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

/// Exit code after Ctrl-C (128 + SIGINT), as shells expect.
pub const INTERRUPTED: i32 = 130;

/// Runs `sync status` or `sync watch`; returns the process exit code.
pub async fn run(command: SyncCommand) -> anyhow::Result<i32> {
    match command {
        SyncCommand::Status(args) => {
            let clients = Clients { args };
            let mut rows = Vec::new();
            for f in clients.features().await? {
                rows.push((feature_name(f), clients.status(f).await?));
            }
            print!("{}", status_table(&clients.args.connection, &rows));
            Ok(0)
        }
        SyncCommand::Watch { args, follow } => {
            let clients = Clients { args };
            tokio::select! {
                done = watch(&clients, follow) => done,
                _ = tokio::signal::ctrl_c() => {
                    // Below the bars, which end without a newline.
                    let below = if std::io::stderr().is_terminal() { "\n" } else { "" };
                    eprintln!("{below}stopped watching; the sync goes on on the server");
                    Ok(INTERRUPTED)
                }
            }
        }
    }
}

/// One bar per feature, or plain lines when stderr is not a terminal.
async fn watch(clients: &Clients, follow: bool) -> anyhow::Result<i32> {
    let features = clients.features().await?;
    anyhow::ensure!(
        !features.is_empty(),
        "the connection has no features to sync"
    );
    let terminal = std::io::stderr().is_terminal();
    let bars = MultiProgress::with_draw_target(if terminal {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style =
        ProgressStyle::with_template("{prefix:<11} [{bar:30.cyan/blue}] {pos:>7}/{len:<7} {msg}")
            .expect("a valid template")
            .progress_chars("=> ");
    let mut streams = futures::stream::SelectAll::new();
    let mut bar_of = BTreeMap::new();
    for f in &features {
        let bar = bars.add(ProgressBar::new(0));
        bar.set_style(style.clone());
        bar.set_prefix(feature_name(*f));
        bar.set_message("asking…");
        bar_of.insert(feature_name(*f), bar);
        let name = feature_name(*f);
        streams.push(clients.watch(*f).await?.map(move |p| (name, p)).boxed());
    }
    let mut latest: BTreeMap<&str, Progress> = BTreeMap::new();
    let mut first_seen = BTreeMap::new();
    while let Some((feature, p)) = streams.next().await {
        let bar = &bar_of[feature];
        bar.set_length(p.total.max(0) as u64);
        bar.set_position(p.copied.max(0) as u64);
        // The rate counts the copies made while watching, not those made before.
        let (copied_then, since) = *first_seen
            .entry(feature)
            .or_insert((p.copied, std::time::Instant::now()));
        let secs = since.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            (p.copied - copied_then) as f64 / secs
        } else {
            0.0
        };
        let detail = format!("{rate:.0}/s  lag {:.1}s", p.lag.as_secs_f64());
        bar.set_message(format!("{:<11} {detail}", p.state.label()));
        if !terminal {
            println!(
                "{feature}: {} {}/{} {detail}",
                p.state.label(),
                p.copied,
                p.total
            );
        }
        latest.insert(feature, p);
        let settled = latest.len() == features.len() && latest.values().all(Progress::settled);
        if settled && !follow {
            for bar in bar_of.values() {
                bar.finish();
            }
            if terminal {
                // The bars end without a newline.
                eprintln!();
            }
            let stopped = latest.values().any(|p| p.state == State::Stopped);
            println!(
                "{}",
                if stopped {
                    "stopped: the connection was disconnected or undone"
                } else {
                    "in sync"
                }
            );
            return Ok(if stopped { 1 } else { 0 });
        }
    }
    anyhow::bail!("the server closed the watch")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_has_a_row_per_feature() {
        let row = |state, total, copied| Progress {
            state,
            total,
            copied,
            lag: Duration::from_millis(1500),
        };
        let table = status_table(
            "con_a",
            &[
                ("drawings", row(State::InSync, 120, 120)),
                ("rfis", row(State::Backfilling, 40, 12)),
            ],
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "connection con_a");
        assert!(lines[1].starts_with("FEATURE"));
        assert!(lines[2].starts_with("drawings     in sync"), "{table}");
        assert!(
            lines[2].contains("120 / 120") && lines[2].ends_with("1.5s"),
            "{table}"
        );
        assert!(lines[3].starts_with("rfis         backfilling"), "{table}");
        assert!(lines[3].contains("12 / 40"), "{table}");
    }
}
