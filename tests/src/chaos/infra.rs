//! The infrastructure the fault suite owns, so it can kill and restart it: a Postgres cluster
//! of its own (initdb in a temp dir), a `nats-server -js`, and every service as its own
//! `connectability serve` process.

use std::{
    fs::File,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A free loopback port (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something listens on `port`.
pub fn wait_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on port {port} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A Postgres cluster in a temp dir on a free port (fsync off: the faults here are process
/// crashes, not power cuts).
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl Postgres {
    fn bin_dir() -> anyhow::Result<PathBuf> {
        if let Ok(dir) = std::env::var("PG_BIN") {
            return Ok(PathBuf::from(dir));
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL server binaries (set PG_BIN to their folder)")?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .collect();
        found.sort();
        found
            .pop()
            .context("no initdb under /usr/lib/postgresql/*/bin (set PG_BIN)")
    }

    fn command(&self, tool: &str) -> Command {
        // Postgres refuses to run as root: run its tools as the `postgres` user then.
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        }
    }

    pub fn init(dir: &Path) -> anyhow::Result<Self> {
        let pg = Postgres {
            bin: Self::bin_dir()?,
            data: dir.join("pgdata"),
            log: dir.join("postgres.log"),
            port: free_port()?,
            as_postgres: is_root(),
        };
        if pg.as_postgres {
            run(Command::new("chown").args(["postgres:postgres"]).arg(dir))?;
        }
        run(pg
            .command("initdb")
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-D"])
            .arg(&pg.data))?;
        Ok(pg)
    }

    pub fn start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c max_connections=400",
            self.port
        );
        run(self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-o", &options, "start"]))
    }

    /// Immediate shutdown: no checkpoint, crash recovery on the next start.
    pub fn crash(&self) -> anyhow::Result<()> {
        run(self
            .command("pg_ctl")
            .args(["-w", "-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "stop"]))
    }

    pub fn stop(&self) {
        let _ = run(self
            .command("pg_ctl")
            .args(["-w", "-D"])
            .arg(&self.data)
            .args(["-m", "fast", "stop"]));
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// A run that fails midway stops its cluster too (stopping a stopped one does nothing).
impl Drop for Postgres {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            self.stop();
        }
    }
}

/// The NATS configuration the project ships: a user per service, with permissions.
pub const NATS_CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nats/nats.conf");

/// `nats-server -js` on a free port with the shipped configuration (deploy/nats/nats.conf),
/// its store in a temp dir, and a fresh password for each service's user and for `admin`.
pub struct Nats {
    pub port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    passwords: std::collections::BTreeMap<String, String>,
}

impl Nats {
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let passwords = connectability_auth::SERVICE_NAMES
            .iter()
            .chain(&["admin"])
            .map(|user| {
                // NATS parses the variable as a config value: it must start with a letter.
                let password = format!("p{}", uuid::Uuid::new_v4().simple());
                (user.to_string(), password)
            })
            .collect();
        let mut nats = Nats {
            port: free_port()?,
            store: dir.join("nats"),
            log: dir.join("nats.log"),
            child: None,
            passwords,
        };
        nats.spawn()?;
        Ok(nats)
    }

    /// `user`'s password (a service name, or `admin`).
    pub fn password(&self, user: &str) -> String {
        self.passwords[user].clone()
    }

    /// `user`'s credentials.
    pub fn credentials(&self, user: &str) -> connectability_events::NatsCredentials {
        connectability_events::NatsCredentials {
            user: user.to_string(),
            password: self.password(user),
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new(std::env::var("NATS_SERVER").unwrap_or("nats-server".into()))
            .args(["-c", NATS_CONF])
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .envs(self.passwords.iter().map(|(user, password)| {
                (
                    format!("NATS_{}_PASSWORD", user.replace('-', "_").to_uppercase()),
                    password.clone(),
                )
            }))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nats-server")?;
        self.child = Some(child);
        wait_port(self.port, Duration::from_secs(20))
    }

    /// SIGKILL, then start again on the same port and store.
    pub fn restart(&mut self, down_for: Duration) -> anyhow::Result<()> {
        self.kill();
        std::thread::sleep(down_for);
        self.spawn()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Messages every durable consumer has yet to see or to ack, over all streams. Outboxes
    /// drained is not idle: a consumer killed mid-batch holds its messages until the ack wait
    /// lapses and JetStream delivers them again.
    pub async fn backlog(url: &str, admin_password: &str) -> anyhow::Result<u64> {
        use futures::TryStreamExt;
        let client = async_nats::ConnectOptions::new()
            .user_and_password("admin".into(), admin_password.into())
            .connection_timeout(Duration::from_secs(2))
            .connect(url)
            .await?;
        let js = async_nats::jetstream::new(client);
        let names: Vec<String> = js.stream_names().try_collect().await?;
        let mut backlog = 0;
        for name in names {
            let stream = js.get_stream(&name).await?;
            let consumers: Vec<_> = stream.consumers().try_collect().await?;
            backlog += consumers
                .iter()
                .map(|c| c.num_pending + c.num_ack_pending as u64)
                .sum::<u64>();
        }
        Ok(backlog)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `connectability serve <service>` process, restarted on the same port and settings.
pub struct Process {
    /// `drawings-sync#1`.
    pub label: String,
    pub service: &'static str,
    pub port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// Not restarted before this (a killed process stays down a while).
    pub down_until: Option<Instant>,
    pub starts: u32,
}

impl Process {
    pub fn new(
        dir: &Path,
        service: &'static str,
        replica: usize,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        Ok(Process {
            label: format!("{service}#{replica}"),
            service,
            port: free_port()?,
            env,
            log: dir.join(format!("{service}-{replica}.log")),
            child: None,
            down_until: None,
            starts: 0,
        })
    }

    /// The settings every start of the process gets.
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// Starts the process; `extra` adds settings for this run only.
    pub fn spawn(&mut self, bin: &Path, extra: &[(&str, &str)]) -> anyhow::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(bin);
        cmd.args(["serve", self.service])
            .env("GRPC_ADDR", format!("127.0.0.1:{}", self.port))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(
            cmd.spawn()
                .with_context(|| format!("starting {}", self.label))?,
        );
        self.starts += 1;
        self.down_until = None;
        Ok(())
    }

    /// SIGKILL; it stays down for `down_for`.
    pub fn kill(&mut self, down_for: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.down_until = Some(Instant::now() + down_for);
    }

    /// Whether it runs; a process that exited by itself is noted and left for a restart.
    pub fn alive(&mut self) -> Option<std::process::ExitStatus> {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
