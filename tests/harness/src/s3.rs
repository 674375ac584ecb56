//! An S3-protocol object store for tests: moto's server mode (`pip install 'moto[server]'`)
//! on a loopback port of its own, behind a proxy that holds every request back by a set
//! delay (the round trip to a real bucket) and logs each request line, so a test can count
//! what the services asked of the store.
//!
//! Without `moto_server` on the PATH, [`S3Store::start`] fails the test under `CI=true` and
//! otherwise reports the skip on stderr and answers `None`, like [`crate::Backend::production`].

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use connectability_blobs::Blobs;
use futures_lite::StreamExt as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Credentials moto accepts (it checks none): dev-only, never a real account's.
const DEV_ONLY_S3_KEY: &str = "test";

/// One request the proxy passed on: its request line (`PUT /bucket/key HTTP/1.1`) and
/// whether it was a server-side copy (`x-amz-copy-source`).
#[derive(Debug, Clone)]
pub struct S3Request {
    pub line: String,
    pub copy: bool,
}

/// moto on loopback with one bucket, reached through a [`DelayProxy`].
pub struct S3Store {
    moto: Child,
    pub bucket: String,
    pub proxy: DelayProxy,
}

impl S3Store {
    /// Starts moto on a free port, creates `bucket` and puts a proxy with no delay in front;
    /// moto's log goes to `log`.
    pub async fn start(bucket: &str, log: &Path) -> Option<S3Store> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let out = std::fs::File::create(log).expect("moto's log file");
        let spawned = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn();
        let moto = match spawned {
            Ok(child) => child,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true requires moto_server (pip install 'moto[server]'): {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED on S3 (moto_server: {e}; pip install 'moto[server]')");
                return None;
            }
        };
        let moto_addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut store = S3Store {
            moto,
            bucket: bucket.to_string(),
            proxy: DelayProxy::start(moto_addr).await,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match create_bucket(moto_addr, bucket).await {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    let _ = store.moto.kill();
                    panic!(
                        "moto at {moto_addr} did not come up (log {}): {e}",
                        log.display()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Some(store)
    }

    /// The S3 settings of a client of this store (through the proxy), as `AWS_*` names.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", format!("http://{}", self.proxy.addr)),
            ("aws_allow_http", "true".into()),
            ("aws_access_key_id", DEV_ONLY_S3_KEY.into()),
            ("aws_secret_access_key", DEV_ONLY_S3_KEY.into()),
            ("aws_region", "us-east-1".into()),
        ]
    }

    /// The same settings as environment variables, for services run as processes.
    pub fn env(&self) -> Vec<(String, String)> {
        self.settings()
            .into_iter()
            .map(|(k, v)| (k.to_uppercase(), v))
            .collect()
    }

    /// `BLOBS_URL` for files under `prefix` of the bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// A client of the files under `prefix`, through the proxy.
    pub fn blobs(&self, prefix: &str) -> Blobs {
        let settings = self.settings();
        let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Blobs::from_url_with(&self.url(prefix), &pairs).expect("an S3 client")
    }

    /// Every key under `prefix` of the bucket, relative to it (as file rows name them).
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let blobs = self.blobs(prefix);
        let mut keys = Vec::new();
        let mut listed = blobs.list("");
        while let Some(key) = listed.next().await {
            keys.push(key.expect("listing the bucket"));
        }
        keys
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        let _ = self.moto.kill();
        let _ = self.moto.wait();
    }
}

/// `PUT /bucket` on moto, straight (not through the proxy).
async fn create_bucket(moto: SocketAddr, bucket: &str) -> std::io::Result<()> {
    let mut s = TcpStream::connect(moto).await?;
    s.write_all(
        format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: {moto}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await?;
    let head = String::from_utf8_lossy(&answer);
    if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "creating bucket {bucket}: {}",
            head.lines().next().unwrap_or_default()
        )))
    }
}

/// A TCP proxy that holds each HTTP request back by [`DelayProxy::set_delay`] before passing
/// it on: the first bytes a client sends after the store last answered it start a request.
pub struct DelayProxy {
    pub addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    requests: Arc<Mutex<Vec<S3Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    pub async fn start(upstream: SocketAddr) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let delay_ms = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (delay, log) = (delay_ms.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(pipe(client, upstream, delay.clone(), log.clone()));
            }
        });
        DelayProxy {
            addr,
            delay_ms,
            requests,
            task,
        }
    }

    /// From now on every request waits `delay` before it reaches the store.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// The requests passed on so far, oldest first.
    pub fn requests(&self) -> Vec<S3Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.requests.lock().unwrap().clear();
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    client: TcpStream,
    upstream: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    log: Arc<Mutex<Vec<S3Request>>>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set when the store answers: the client's next bytes are a new request.
    let answered = AtomicBool::new(true);
    let requests = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return server_write.shutdown().await;
            }
            if answered.swap(false, Ordering::SeqCst) {
                let head = String::from_utf8_lossy(&buf[..n]);
                log.lock().unwrap().push(S3Request {
                    line: head.lines().next().unwrap_or_default().to_string(),
                    copy: head.to_ascii_lowercase().contains("\r\nx-amz-copy-source:"),
                });
                let delay = delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
            }
            server_write.write_all(&buf[..n]).await?;
        }
    };
    let answers = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = server_read.read(&mut buf).await?;
            if n == 0 {
                return client_write.shutdown().await;
            }
            answered.store(true, Ordering::SeqCst);
            client_write.write_all(&buf[..n]).await?;
        }
    };
    let _: std::io::Result<((), ())> = tokio::try_join!(requests, answers);
}

/// Keys of `keys` that no row of `named` names: objects without a row (orphans).
pub fn unnamed<'a>(keys: &'a [String], named: &[String]) -> Vec<&'a String> {
    let named: std::collections::HashSet<&String> = named.iter().collect();
    keys.iter().filter(|k| !named.contains(k)).collect()
}
