//! `connectability sync status|watch` as a user runs it: the binary, against a running
//! server, with a user's token. Without a terminal `watch` prints a line per change, which is
//! what these tests read.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use connectability_testkit::{Backend, Service, TestApp};
use connectability_tests::{connectability_bin, fanout::Fanout};

on_both_backends!(
    sync_watch_follows_the_copies_to_in_sync_and_status_prints_the_table,
    sync_watch_leaves_cleanly_on_ctrl_c,
);

fn sync(app: &TestApp, token: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(connectability_bin());
    cmd.arg("sync")
        .args(args)
        .env("CONNECTABILITY_SERVER", format!("http://{}", app.addr))
        .env("CONNECTABILITY_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The child's stdout, line by line, as it comes.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for the child to exit (at most `timeout`).
fn exit_code(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("child status") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

fn stderr(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut s);
    }
    s
}

async fn world(backend: Backend) -> Fanout {
    let app = TestApp::spawn(
        backend,
        &[
            Service::Directory,
            Service::ConnectionManager,
            Service::DrawingsSync,
        ],
    )
    .await;
    Fanout::build(app, 1, 64).await.unwrap()
}

/// The README's walkthrough: 40 published sheets, then a new connection whose backfill
/// `watch` follows to the end.
async fn sync_watch_follows_the_copies_to_in_sync_and_status_prints_the_table(backend: Backend) {
    let mut world = world(backend).await;
    let token = world.app.user_token(&world.raj);
    let ids = world.revisions(40).await.unwrap();
    world.publish(ids).await.unwrap();
    let (_, connection) = world
        .connect(&world.app, "Tower - late trade")
        .await
        .unwrap();

    let mut watch = sync(&world.app, &token, &["watch", "--connection", &connection])
        .spawn()
        .unwrap();
    let out = lines(&mut watch);
    let code = tokio::task::spawn_blocking(move || {
        let code = exit_code(&mut watch, Duration::from_secs(60));
        (code, stderr(&mut watch))
    })
    .await
    .unwrap();
    let printed: Vec<String> = out.try_iter().collect();
    assert_eq!(code.0, Some(0), "watch: {printed:?} {}", code.1);
    assert_eq!(
        printed.last().map(String::as_str),
        Some("in sync"),
        "{printed:?}"
    );
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("drawings: in sync 40/40 ")),
        "{printed:?}"
    );
    // Every line it printed before shows progress that only grows.
    let copied: Vec<i64> = printed
        .iter()
        .filter_map(|l| l.strip_prefix("drawings: "))
        .filter_map(|l| l.split_whitespace().find(|w| w.contains('/')))
        .filter_map(|w| w.split('/').next()?.parse().ok())
        .collect();
    assert!(copied.windows(2).all(|w| w[0] <= w[1]), "{printed:?}");

    let status = sync(&world.app, &token, &["status", "--connection", &connection])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("drawings"))
        .unwrap_or_else(|| panic!("no drawings row: {table}"));
    assert!(
        row.contains("in sync") && row.contains("40 / 40"),
        "{table}"
    );

    // A connection that does not exist is a clear error, not a hang.
    let unknown = sync(&world.app, &token, &["status", "--connection", "con_nope"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("NotFound"), "{err}");
}

async fn sync_watch_leaves_cleanly_on_ctrl_c(backend: Backend) {
    let world = world(backend).await;
    let token = world.app.user_token(&world.raj);
    let connection = world.downstreams[0].1.clone();
    let mut watch = sync(
        &world.app,
        &token,
        &["watch", "--follow", "--connection", &connection],
    )
    .spawn()
    .unwrap();
    let out = lines(&mut watch);
    let first = tokio::task::spawn_blocking(move || out.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("watch prints the current state");
    assert!(first.starts_with("drawings: in sync"), "{first}");
    let pid = watch.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (code, err) = tokio::task::spawn_blocking(move || {
        (
            exit_code(&mut watch, Duration::from_secs(10)),
            stderr(&mut watch),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("stopped watching"), "{err}");
}
