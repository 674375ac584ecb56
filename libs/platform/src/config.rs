//! Settings shared by every service, read from flags or environment variables. Each is
//! listed by `--help` and in the README.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use connectability_auth::{AccessTokenRule, Issuer, ServiceIdentities, Verifier};

use crate::service_identity::ServiceToken;

/// DEV ONLY. The HS256 secret `connectability dev` and the tests use when none is set.
/// Anyone who knows it can mint any token: never run a reachable deployment with it.
pub const DEV_ONLY_HS256_SECRET: &str = "connectability-DEV-ONLY-secret-do-not-use-in-production";

#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// Address of the Prometheus `/metrics` endpoint; `off` disables it.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,

    /// Event bus: `inproc:` (one process) or `nats://host:4222` (JetStream).
    #[arg(long, env = "EVENTS_URL", default_value = "inproc:")]
    pub events_url: String,

    /// First token of every NATS subject and stream name.
    #[arg(long, env = "EVENTS_PREFIX", default_value = "connectability")]
    pub events_prefix: String,

    /// NATS user (default: the service's name, when a password is set).
    #[arg(long, env = "EVENTS_USER")]
    pub events_user: Option<String>,

    /// File holding the NATS user's password (a mounted Secret; a trailing newline is ignored).
    #[arg(long, env = "EVENTS_PASSWORD_FILE")]
    pub events_password_file: Option<PathBuf>,

    /// The NATS user's password, instead of EVENTS_PASSWORD_FILE.
    #[arg(long, env = "EVENTS_PASSWORD", hide_env_values = true)]
    pub events_password: Option<String>,

    #[command(flatten)]
    pub auth: AuthConfig,

    /// PEM certificate (chain) this server presents: gRPC on GRPC_ADDR is then TLS only.
    #[arg(long, env = "GRPC_TLS_CERT_FILE")]
    pub grpc_tls_cert_file: Option<PathBuf>,

    /// PEM private key of GRPC_TLS_CERT_FILE.
    #[arg(long, env = "GRPC_TLS_KEY_FILE")]
    pub grpc_tls_key_file: Option<PathBuf>,

    /// PEM CA that `https://` peer URLs (DIRECTORY_URL, …) are verified against.
    #[arg(long, env = "GRPC_TLS_CA_FILE")]
    pub grpc_tls_ca_file: Option<PathBuf>,

    /// A plaintext listener answering `grpc.health.v1` only (for the kubelet's gRPC probes,
    /// which speak no TLS); `off` for none.
    #[arg(long, env = "HEALTH_ADDR", default_value = "off")]
    pub health_addr: String,

    /// Logs as `pretty` text or `json` lines. Levels come from `RUST_LOG` (default `info`).
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: crate::telemetry::LogFormat,

    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Days a consumer's inbox keeps the ids of events it handled (past JetStream's 7-day
    /// stream age, so a redelivered event still finds its entry).
    #[arg(long, env = "RETENTION_INBOX_DAYS", default_value_t = connectability_store::retention::INBOX_DAYS)]
    pub retention_inbox_days: u64,

    /// Days a mutation's request id (and its first answer) is kept for retries.
    #[arg(long, env = "RETENTION_REQUEST_IDS_DAYS", default_value_t = connectability_store::retention::REQUEST_IDS_DAYS)]
    pub retention_request_ids_days: u64,

    /// Seconds between reporting NOT_SERVING and closing the listener on shutdown, so load
    /// balancers stop sending new calls before in-flight calls drain.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 2)]
    pub shutdown_grace_secs: u64,
}

impl CommonConfig {
    pub fn metrics_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.metrics_addr == "off" || self.metrics_addr.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.metrics_addr.parse().context("METRICS_ADDR")?))
    }

    pub fn health_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.health_addr == "off" || self.health_addr.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.health_addr.parse().context("HEALTH_ADDR")?))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The NATS user `service` connects as, if a password is configured.
    pub fn events_credentials(
        &self,
        service: &str,
    ) -> anyhow::Result<Option<connectability_events::NatsCredentials>> {
        let password = match (&self.events_password_file, &self.events_password) {
            (Some(_), Some(_)) => {
                anyhow::bail!("set only one of EVENTS_PASSWORD_FILE and EVENTS_PASSWORD")
            }
            (Some(path), None) => std::fs::read_to_string(path)
                .with_context(|| format!("reading EVENTS_PASSWORD_FILE {}", path.display()))?,
            (None, Some(p)) => p.clone(),
            (None, None) => {
                if self.events_user.is_some() {
                    anyhow::bail!("EVENTS_USER needs EVENTS_PASSWORD_FILE or EVENTS_PASSWORD");
                }
                return Ok(None);
            }
        };
        let password = password.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            anyhow::bail!("the NATS password is empty");
        }
        Ok(Some(connectability_events::NatsCredentials {
            user: self
                .events_user
                .clone()
                .unwrap_or_else(|| service.to_string()),
            password,
        }))
    }
}

/// How tokens are checked. Exactly one source: an HS256 secret, an RS256 public key, or a
/// JWKS file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthConfig {
    /// Shared HS256 secret (development). Also lets services mint their own service tokens.
    #[arg(long, env = "AUTH_HS256_SECRET", hide_env_values = true)]
    pub hs256_secret: Option<String>,

    /// PEM file with the RS256 public key of your identity provider.
    #[arg(long, env = "AUTH_RS256_PUBLIC_KEY_FILE")]
    pub rs256_public_key_file: Option<PathBuf>,

    /// JWKS JSON file (e.g. your provider's keys mounted from a Secret); `kid` picks the key.
    #[arg(long, env = "AUTH_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// Your identity provider's JWKS URL (https://…): fetched at start, refreshed every
    /// AUTH_JWKS_REFRESH_SECS and whenever a token names an unknown key id (key rotation).
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// How often the JWKS URL is fetched again.
    #[arg(long, env = "AUTH_JWKS_REFRESH_SECS", default_value_t = 300)]
    pub jwks_refresh_secs: u64,

    /// Required `iss` of every token; required with RS256 keys.
    #[arg(long, env = "AUTH_ISSUER")]
    pub issuer: Option<String>,

    /// Required `aud` of every token (this deployment's client id); required with RS256 keys.
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub audience: Option<String>,

    /// Bearer token this service presents to other services (role `service`). Optional with
    /// an HS256 secret, from which one is minted.
    #[arg(long, env = "SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<String>,

    /// File holding the token this service presents to others (its projected ServiceAccount
    /// token); read again whenever it changes, so rotation needs no restart.
    #[arg(long, env = "SERVICE_TOKEN_FILE")]
    pub service_token_file: Option<PathBuf>,

    /// Lets `serve` accept an HS256 shared secret. Development only: anyone holding the
    /// secret can mint any token, a service's included.
    #[arg(long, env = "AUTH_ALLOW_HS256", default_value_t = false)]
    pub allow_hs256: bool,

    /// `name=value`: the claim that marks an access token, for identity providers that do not
    /// set the JWT `typ` to `at+jwt` (e.g. `token_use=access`). Unset: `typ` must be `at+jwt`.
    #[arg(long, env = "AUTH_ACCESS_TOKEN_CLAIM")]
    pub access_token_claim: Option<String>,

    /// JWKS file of the cluster's ServiceAccount token issuer (`kubectl get --raw
    /// /openid/v1/jwks`): services are then recognised by their own projected tokens.
    #[arg(long, env = "SERVICE_AUTH_JWKS_FILE")]
    pub service_jwks_file: Option<PathBuf>,

    /// JWKS URL of the cluster's ServiceAccount token issuer (a managed cluster's public OIDC
    /// issuer), instead of SERVICE_AUTH_JWKS_FILE.
    #[arg(long, env = "SERVICE_AUTH_JWKS_URL")]
    pub service_jwks_url: Option<String>,

    /// The `iss` of the cluster's ServiceAccount tokens.
    #[arg(long, env = "SERVICE_AUTH_ISSUER")]
    pub service_issuer: Option<String>,

    /// The audience the services' projected tokens are minted for.
    #[arg(long, env = "SERVICE_AUTH_AUDIENCE", default_value = "connectability")]
    pub service_audience: String,

    /// The namespace the services run in: identities are `system:serviceaccount:<ns>:<service>`.
    #[arg(long, env = "SERVICE_AUTH_NAMESPACE")]
    pub service_namespace: Option<String>,
}

/// Whether an HS256 secret is one of the published development secrets.
pub fn is_dev_only_secret(secret: &str) -> bool {
    let s = secret.to_ascii_lowercase();
    secret == DEV_ONLY_HS256_SECRET || s.contains("dev-only") || s.contains("do-not-use")
}

impl AuthConfig {
    /// The dev-only setup `connectability dev` and tests use when nothing is configured.
    pub fn dev_only() -> Self {
        Self {
            hs256_secret: Some(DEV_ONLY_HS256_SECRET.to_string()),
            allow_hs256: true,
            service_audience: "connectability".into(),
            ..Default::default()
        }
    }

    /// The token verifier these settings describe. An identity provider's keys (RS256: a
    /// public key, a JWKS file or a JWKS URL) need AUTH_ISSUER and AUTH_AUDIENCE, since the
    /// same provider signs tokens for other applications too.
    pub async fn verifier(&self) -> anyhow::Result<Verifier> {
        let rs256 = self.rs256_public_key_file.is_some()
            || self.jwks_file.is_some()
            || self.jwks_url.is_some();
        if rs256 && (self.issuer.is_none() || self.audience.is_none()) {
            anyhow::bail!(
                "RS256 keys (AUTH_RS256_PUBLIC_KEY_FILE, AUTH_JWKS_FILE, AUTH_JWKS_URL) need AUTH_ISSUER and AUTH_AUDIENCE: without them a token your identity provider issued for another application would be accepted"
            );
        }
        let verifier = match (
            &self.hs256_secret,
            &self.rs256_public_key_file,
            &self.jwks_file,
            &self.jwks_url,
        ) {
            (Some(secret), None, None, None) => {
                if !self.allow_hs256 {
                    anyhow::bail!(
                        "AUTH_HS256_SECRET is a shared secret anyone holding it can mint any token with: set AUTH_ALLOW_HS256=true to use it anyway (development only), or use your identity provider's keys (AUTH_JWKS_URL, AUTH_JWKS_FILE, AUTH_RS256_PUBLIC_KEY_FILE)"
                    );
                }
                if is_dev_only_secret(secret) {
                    tracing::warn!(
                        "using a published DEV-ONLY auth secret: anyone can mint tokens; never expose this server"
                    );
                }
                Verifier::hs256(secret.trim().as_bytes())
            }
            (None, Some(pem), None, None) => {
                let pem =
                    std::fs::read(pem).with_context(|| format!("reading {}", pem.display()))?;
                Verifier::rs256_pem(&pem)?
            }
            (None, None, Some(jwks), None) => {
                let json = std::fs::read_to_string(jwks)
                    .with_context(|| format!("reading {}", jwks.display()))?;
                Verifier::rs256_jwks(&json)?
            }
            (None, None, None, Some(url)) => {
                Verifier::rs256_jwks_url(url, Duration::from_secs(self.jwks_refresh_secs.max(1)))
                    .await?
            }
            (None, None, None, None) => anyhow::bail!(
                "no token verification configured: set AUTH_HS256_SECRET, AUTH_RS256_PUBLIC_KEY_FILE, AUTH_JWKS_FILE or AUTH_JWKS_URL"
            ),
            _ => anyhow::bail!(
                "set only one of AUTH_HS256_SECRET, AUTH_RS256_PUBLIC_KEY_FILE, AUTH_JWKS_FILE, AUTH_JWKS_URL"
            ),
        };
        let rule = match &self.access_token_claim {
            Some(spec) => AccessTokenRule::claim(spec)?,
            None => AccessTokenRule::Typ,
        };
        let mut verifier = verifier
            .with_issuer_and_audience(self.issuer.as_deref(), self.audience.as_deref())
            .with_access_token_rule(rule);
        if let Some(services) = self.service_identities().await? {
            verifier = verifier.with_service_identities(services);
        }
        Ok(verifier)
    }

    /// How services are recognised when they run with their own ServiceAccount tokens.
    async fn service_identities(&self) -> anyhow::Result<Option<ServiceIdentities>> {
        let keys = match (&self.service_jwks_file, &self.service_jwks_url) {
            (None, None) => return Ok(None),
            (Some(file), None) => {
                let json = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                Verifier::rs256_jwks(&json)?
            }
            (None, Some(url)) => {
                Verifier::rs256_jwks_url(url, Duration::from_secs(self.jwks_refresh_secs.max(1)))
                    .await?
            }
            (Some(_), Some(_)) => {
                anyhow::bail!("set only one of SERVICE_AUTH_JWKS_FILE and SERVICE_AUTH_JWKS_URL")
            }
        };
        let (Some(issuer), Some(namespace)) = (&self.service_issuer, &self.service_namespace)
        else {
            anyhow::bail!(
                "service identities (SERVICE_AUTH_JWKS_FILE or SERVICE_AUTH_JWKS_URL) need SERVICE_AUTH_ISSUER and SERVICE_AUTH_NAMESPACE"
            );
        };
        let keys = keys.with_issuer_and_audience(Some(issuer), Some(&self.service_audience));
        Ok(Some(ServiceIdentities::new(keys, namespace)))
    }

    /// The token this service sends to other services, if it has one: its token file, a
    /// fixed token, or (development) one minted from the HS256 secret.
    pub fn service_token(&self, service_name: &str) -> anyhow::Result<Option<ServiceToken>> {
        if let Some(path) = &self.service_token_file {
            return Ok(Some(ServiceToken::file(path)?));
        }
        Ok(self
            .service_token
            .as_deref()
            .map(ServiceToken::fixed)
            .or_else(|| {
                self.hs256_secret.as_ref().map(|s| {
                    ServiceToken::fixed(&Issuer::hs256(s.trim().as_bytes()).service(service_name))
                })
            }))
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;

    #[tokio::test]
    async fn rs256_keys_need_an_issuer_and_an_audience() {
        let dir = std::env::temp_dir().join(format!("auth-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, r#"{"keys":[]}"#).unwrap();
        let without = AuthConfig {
            jwks_file: Some(jwks.clone()),
            ..Default::default()
        };
        let e = without.verifier().await.err().unwrap().to_string();
        assert!(
            e.contains("AUTH_ISSUER") && e.contains("AUTH_AUDIENCE"),
            "{e}"
        );
        let url_only = AuthConfig {
            jwks_url: Some("https://idp.example/jwks.json".into()),
            issuer: Some("https://idp.example".into()),
            ..Default::default()
        };
        let e = url_only.verifier().await.err().unwrap().to_string();
        assert!(e.contains("AUTH_AUDIENCE"), "{e}");
        let two = AuthConfig {
            hs256_secret: Some("s".into()),
            jwks_url: Some("https://idp.example/jwks.json".into()),
            issuer: Some("i".into()),
            audience: Some("a".into()),
            ..Default::default()
        };
        let e = two.verifier().await.err().unwrap().to_string();
        assert!(e.contains("only one"), "{e}");
        // HS256 (development) takes issuer and audience when given, and works without.
        let dev = AuthConfig {
            hs256_secret: Some("s".into()),
            ..Default::default()
        };
        let e = dev.verifier().await.err().unwrap().to_string();
        assert!(
            e.contains("AUTH_ALLOW_HS256"),
            "HS256 needs an explicit allow: {e}"
        );
        let allowed = AuthConfig {
            hs256_secret: Some("s\n".into()),
            allow_hs256: true,
            ..Default::default()
        };
        // A mounted secret's trailing newline is not part of the key.
        let token = Issuer::hs256(b"s").user("usr_a");
        assert!(allowed.verifier().await.unwrap().verify(&token).is_ok());
        assert!(is_dev_only_secret(
            "dev-only-connectability-secret-do-not-use-in-production"
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
