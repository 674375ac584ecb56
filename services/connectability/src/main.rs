//! `connectability`: the umbrella binary.
//!
//! - `dev`: every service in one process on one gRPC address, embedded SQLite in a data
//!   folder and `inproc:` events; loads demo data on first start and prints grpcurl commands.
//! - `serve <service>`: one service, configured from the environment (production).
//! - `token --user <id>`: a dev token (HS256).
//! - `migrate <service>`: applies a service's migrations to `DATABASE_URL`.
//! - `dead-letters <service>`: lists events a service's consumers gave up on.
//! - `sync status|watch --connection ID`: a connection's sync, asked of a running server.
//! - `services`: every service's name and what it does (the composition root's list).

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};
use connectability::catalog;
use connectability_auth::{Issuer, ROLE_OPERATOR, ROLE_SERVICE};
use connectability_platform::{
    AuthConfig, DEV_ONLY_HS256_SECRET, GrpcServer, metrics::Metrics, telemetry::LogFormat,
};
use connectability_store::{Db, inbox};

mod sync_cli;

#[derive(Parser)]
#[command(
    name = "connectability",
    version,
    about = "Connectability: connect construction projects across company accounts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in one process on embedded storage, with demo data.
    Dev(DevArgs),
    /// Run one service, configured from the environment.
    Serve {
        #[command(subcommand)]
        service: ServeService,
    },
    /// Print a dev token (HS256, signed with AUTH_HS256_SECRET or the dev-only secret).
    Token(TokenArgs),
    /// Apply a service's migrations to DATABASE_URL and exit.
    Migrate {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(catalog::names()))]
        service: String,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// A connection's sync, asked of a running server: `status` prints it once, `watch`
    /// follows it with a progress bar per feature.
    Sync {
        #[command(subcommand)]
        command: sync_cli::SyncCommand,
    },
    /// Print every service's name and what it does, one per line (tab-separated).
    Services,
    /// List or replay the dead letters in a service's database (events its consumers gave up on).
    DeadLetters {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// Print them, oldest first.
    List {
        /// Only this consumer's.
        #[arg(long)]
        consumer: Option<String>,
    },
    /// Ask the running consumer to apply one again (after fixing the cause).
    Replay { id: String },
}

#[derive(Subcommand)]
enum ServeService {
    /// Companies, projects, users, project directories.
    Directory(Box<directory::Config>),
    /// Connections between projects.
    ConnectionManager(Box<connection_manager::Config>),
    /// The Drawings tool and its sync to connected projects.
    DrawingsSync(Box<drawings_sync::Config>),
    /// The RFIs tool and its sync to connected projects.
    RfiSync(Box<rfi_sync::Config>),
    /// The Submittals tool and its sync to connected projects.
    SubmittalSync(Box<submittal_sync::Config>),
    /// Notifications by inbox and email.
    Notification(Box<notification::Config>),
}

#[derive(clap::Args)]
struct DevArgs {
    /// Address of the gRPC server that hosts every service.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,
    /// Prometheus `/metrics` address; `off` disables it.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9464")]
    metrics_addr: String,
    /// Folder for the embedded databases (one SQLite file per service).
    #[arg(long, env = "DATA_DIR", default_value = ".data")]
    data_dir: PathBuf,
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    log_format: LogFormat,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The user id the token names (e.g. usr_raj).
    #[arg(long, conflicts_with_all = ["operator", "service"])]
    user: Option<String>,
    /// An operator token (creates companies, sees everything).
    #[arg(long)]
    operator: bool,
    /// A service token with this service name.
    #[arg(long)]
    service: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = connectability_auth::DEFAULT_TTL_SECS)]
    ttl_secs: u64,
    #[arg(long, env = "AUTH_HS256_SECRET", hide_env_values = true)]
    hs256_secret: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // object_store's S3 client brings aws-lc-rs beside ring; pick one provider for rustls.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Dev(args) => dev(args).await,
        Command::Serve {
            service: ServeService::Directory(config),
        } => {
            let _t =
                connectability_platform::telemetry::init(directory::NAME, config.common.log_format);
            directory::serve(*config).await
        }
        Command::Serve {
            service: ServeService::ConnectionManager(config),
        } => {
            let _t = connectability_platform::telemetry::init(
                connection_manager::NAME,
                config.common.log_format,
            );
            connection_manager::serve(*config).await
        }
        Command::Serve {
            service: ServeService::DrawingsSync(config),
        } => {
            let _t = connectability_platform::telemetry::init(
                drawings_sync::NAME,
                config.tool.common.log_format,
            );
            drawings_sync::serve(*config).await
        }
        Command::Serve {
            service: ServeService::RfiSync(config),
        } => {
            let _t = connectability_platform::telemetry::init(
                rfi_sync::NAME,
                config.tool.common.log_format,
            );
            rfi_sync::serve(*config).await
        }
        Command::Serve {
            service: ServeService::SubmittalSync(config),
        } => {
            let _t = connectability_platform::telemetry::init(
                submittal_sync::NAME,
                config.tool.common.log_format,
            );
            submittal_sync::serve(*config).await
        }
        Command::Serve {
            service: ServeService::Notification(config),
        } => {
            let _t = connectability_platform::telemetry::init(
                notification::NAME,
                config.common.log_format,
            );
            notification::serve(*config).await
        }
        Command::Sync { command } => {
            let code = sync_cli::run(command).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Token(args) => {
            let secret = args.hs256_secret.unwrap_or_else(|| {
                eprintln!(
                    "warning: AUTH_HS256_SECRET is not set; signing with the DEV-ONLY secret"
                );
                DEV_ONLY_HS256_SECRET.to_string()
            });
            let issuer = Issuer::hs256(secret.as_bytes());
            let token = match (args.user, args.operator, args.service) {
                (Some(user), _, _) => issuer.mint(&user, &[], args.ttl_secs),
                (None, true, _) => issuer.mint("operator", &[ROLE_OPERATOR], args.ttl_secs),
                (None, false, Some(svc)) => issuer.mint(&svc, &[ROLE_SERVICE], args.ttl_secs),
                (None, false, None) => {
                    anyhow::bail!("say --user <id>, --operator or --service <name>")
                }
            };
            println!("{token}");
            Ok(())
        }
        Command::Migrate {
            service,
            database_url,
        } => {
            let service = catalog::find(&service).expect("clap checked the name");
            let db = Db::connect(&database_url).await?;
            db.migrate(&(service.migrations)()).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Services => {
            for s in catalog::SERVICES {
                println!("{}\t{}", s.name, s.about);
            }
            Ok(())
        }
        Command::DeadLetters {
            database_url,
            action,
        } => {
            let db = Db::connect(&database_url).await?;
            match action {
                DeadLetterAction::List { consumer } => {
                    let letters = inbox::list_dead_letters(&db, consumer.as_deref()).await?;
                    if letters.is_empty() {
                        println!("no dead letters");
                    }
                    for d in letters {
                        println!(
                            "{}  consumer={} event={} type={} attempts={} error={}",
                            d.id,
                            d.consumer,
                            d.envelope.id,
                            d.envelope.event_type,
                            d.attempts,
                            d.error
                        );
                    }
                }
                DeadLetterAction::Replay { id } => {
                    anyhow::ensure!(
                        inbox::request_replay(&db, &id).await?,
                        "no dead letter `{id}`"
                    );
                    println!(
                        "replay requested: the running consumer applies it within a second or two"
                    );
                }
            }
            Ok(())
        }
    }
}

/// Every service in one process, on SQLite files in `data_dir` and in-process events.
async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let _telemetry = connectability_platform::telemetry::init("connectability", args.log_format);
    let auth = match std::env::var("AUTH_HS256_SECRET") {
        Ok(secret) if !secret.is_empty() => AuthConfig {
            hs256_secret: Some(secret),
            ..AuthConfig::dev_only()
        },
        _ => AuthConfig::dev_only(),
    };
    let secret = auth.hs256_secret.clone().expect("dev uses an HS256 secret");
    let bus = connectability_events::connect("inproc:", "connectability").await?;
    let sqlite = |name: &str| format!("sqlite://{}/{name}.db", args.data_dir.display());

    // Bound first: in-process services call each other through this very address.
    let listener = tokio::net::TcpListener::bind(args.grpc_addr).await?;
    let addr = listener.local_addr()?;
    let metrics = Metrics::new();
    let _metrics_task = match args.metrics_addr.as_str() {
        "off" | "" => None,
        addr => Some(metrics.clone().serve(addr.parse()?).await?),
    };
    let mut server = GrpcServer::new(auth.verifier().await?, metrics);
    let max_message_bytes = 4 * 1024 * 1024;

    // In-process services reach each other through this server's own address.
    let blobs = connectability_blobs::Blobs::from_url(&format!(
        "file://{}/blobs",
        args.data_dir.display()
    ))?;
    let process = catalog::InProcess {
        bus,
        blobs: blobs.clone(),
        peers: connectability_platform::directory::channel(&format!("http://{addr}"))?,
        issuer: Issuer::hs256(secret.as_bytes()),
        clock: std::sync::Arc::new(connectability_platform::clock::SystemClock),
        directory_cache: std::time::Duration::from_secs(2),
        drawings: Default::default(),
        rfis: Default::default(),
        submittals: Default::default(),
        work_retry: Default::default(),
        mail: notification::MailSettings {
            smtp_url: std::env::var("SMTP_URL").ok().filter(|u| !u.is_empty()),
            dir: args.data_dir.join("mail"),
            from: "Connectability <no-reply@connectability.local>".into(),
            base_url: std::env::var("NOTIFY_BASE_URL")
                .unwrap_or_else(|_| "http://localhost:8080".into()),
            max_backoff: std::time::Duration::from_secs(60),
            retention: Default::default(),
        },
    };
    let mut loaded = false;
    for service in catalog::SERVICES {
        let db = Db::connect(&sqlite(service.name)).await?;
        db.migrate(&(service.migrations)()).await?;
        // The directory's demo data decides what the welcome says.
        let demo = (service.demo)(&db, &blobs).await?;
        if service.name == directory::NAME {
            loaded = demo;
        }
        (service.start)(db, &process)
            .await?
            .mount_on(&mut server, max_message_bytes);
    }

    print_welcome(
        &addr,
        &Issuer::hs256(secret.as_bytes()),
        loaded,
        &args.data_dir,
    );
    server
        .serve(
            listener,
            connectability_platform::shutdown_signal(),
            std::time::Duration::from_millis(200),
        )
        .await
}

fn print_welcome(addr: &SocketAddr, issuer: &Issuer, loaded: bool, data_dir: &std::path::Path) {
    let raj = issuer.user("usr_raj");
    let gina = issuer.user("usr_gina");
    let operator = issuer.operator();
    println!();
    println!(
        "Connectability dev is up on {addr} (embedded SQLite in {}, in-process events).",
        data_dir.display()
    );
    println!(
        "{}",
        if loaded {
            "Demo data loaded."
        } else {
            "Demo data already present."
        }
    );
    println!("DEV-ONLY tokens (30 days) for the demo people:");
    for (id, _, name, _, admin) in directory::demo::USERS {
        let role = if *admin { "company admin" } else { "member" };
        println!(
            "  export TOKEN_{}={}   # {name}, {role}",
            id.trim_start_matches("usr_").to_uppercase(),
            issuer.user(id)
        );
    }
    println!("  export TOKEN_OPERATOR={operator}");
    println!();
    println!("Try (paste as is):");
    println!("  grpcurl -plaintext {addr} list");
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {raj}' {addr} connectability.directory.v1.DirectoryService/ListProjects"
    );
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {gina}' -d '{{\"project_id\":\"prj_harbor_tower\"}}' {addr} connectability.directory.v1.DirectoryService/ListProjectMembers"
    );
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {operator}' {addr} connectability.directory.v1.DirectoryService/ListCompanies"
    );
    println!("Connect Ridgeline's project to Summit's (auto-approved):");
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {raj}' -d '{{\"downstream_project_id\":\"prj_harbor_electrical\",\"upstream_project_id\":\"prj_harbor_tower\",\"features\":[\"FEATURE_DRAWINGS\"]}}' {addr} connectability.connections.v1.ConnectionService/RequestConnection"
    );
    println!(
        "More in the README's walkthrough (Keystone Builders reviews requests; its HQ project has demo RFIs and submittals)."
    );
    println!(
        "Emails land in {}/mail as .eml files (set SMTP_URL to send them).",
        data_dir.display()
    );
    println!();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `serve` offers exactly the composition root's services, by the same names.
    #[test]
    fn serve_offers_every_service_of_the_catalog() {
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve");
        let offered: Vec<&str> = serve.get_subcommands().map(|c| c.get_name()).collect();
        assert_eq!(offered, catalog::names());
    }
}
