//! Who is calling: JWT verification (HS256 shared secret in dev, RS256 public key or a JWKS
//! document in production), the [`Caller`] put on every request, and dev token minting.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};

/// The role claim that makes a token an operator's (creates companies, sees everything).
pub const ROLE_OPERATOR: &str = "operator";
/// The role claim of service-to-service calls (e.g. asking the directory for access).
/// Honoured only where services share the HS256 secret (development); in production each
/// service presents its own ServiceAccount token instead ([`ServiceIdentities`]).
pub const ROLE_SERVICE: &str = "service";

/// The services that may call one another. A service identity naming anything else is refused.
pub const SERVICE_NAMES: [&str; 6] = [
    "directory",
    "connection-manager",
    "drawings-sync",
    "rfi-sync",
    "submittal-sync",
    "notification",
];

/// The JWT `typ` of an OAuth 2.0 access token (RFC 9068). ID tokens carry `JWT` and are
/// refused: they say who someone is to a client, not what the client may call.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The largest JWKS document fetched by URL.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The claims Connectability reads. `sub` is a user id (`usr_…`), an operator name or a
/// service name; `roles` says which.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    /// Not valid before (checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// The verified identity behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person; `user_id` is a directory user id.
    User { user_id: String },
    /// A platform operator: may create companies and see every record.
    Operator { name: String },
    /// Another Connectability service.
    Service { name: String },
}

impl Caller {
    /// The id recorded as `actor` in histories and events.
    pub fn actor_id(&self) -> &str {
        match self {
            Caller::User { user_id } => user_id,
            Caller::Operator { name } | Caller::Service { name } => name,
        }
    }

    fn from_claims(claims: Claims) -> Caller {
        if claims.roles.iter().any(|r| r == ROLE_OPERATOR) {
            Caller::Operator { name: claims.sub }
        } else if claims.roles.iter().any(|r| r == ROLE_SERVICE) {
            Caller::Service { name: claims.sub }
        } else {
            Caller::User {
                user_id: claims.sub,
            }
        }
    }
}

/// PERMISSION_DENIED unless `caller` is one of the services in `allowed` (by the name its
/// identity carries). Service-only RPCs name exactly the services that call them, so no
/// other service, user or operator reaches them.
pub fn require_service(caller: &Caller, allowed: &[&str], rpc: &str) -> Result<(), tonic::Status> {
    match caller {
        Caller::Service { name } if allowed.contains(&name.as_str()) => Ok(()),
        _ => Err(tonic::Status::permission_denied(format!(
            "{rpc} is a service-to-service call for {} only",
            allowed.join(", ")
        ))),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("auth configuration: {0}")]
    Config(String),
}

/// A verification key and the `kid` it answers to (`None`: any token).
type Key = (Option<String>, DecodingKey);

/// Where a verifier's keys come from.
#[derive(Clone)]
enum Keys {
    Fixed(Arc<Vec<Key>>),
    /// A JWKS document fetched by URL and refreshed in the background.
    Remote(Arc<RemoteJwks>),
}

/// Keys fetched from an identity provider's JWKS URL. They are refreshed every
/// `refresh` and, at most every [`MIN_REFETCH`], as soon as a token names a key id they lack
/// (the provider rotated its keys); a failed fetch keeps the keys in hand.
pub struct RemoteJwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<Vec<Key>>>,
    wake: Arc<tokio::sync::Notify>,
}

/// Makes ring the process's rustls crypto provider, if none is yet: the workspace's one
/// provider (`make lint` checks no other is compiled in). HTTPS clients need it installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The least time between two fetches of a JWKS prompted by unknown key ids.
pub const MIN_REFETCH: Duration = Duration::from_secs(5);

impl RemoteJwks {
    async fn fetch(&self) -> Result<usize, AuthError> {
        let config = |e: String| AuthError::Config(format!("JWKS from {}: {e}", self.url));
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| config(e.to_string()))?;
        if !response.status().is_success() {
            return Err(config(format!("HTTP {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(config(format!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| config(e.to_string()))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(config(format!("larger than {MAX_JWKS_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let body = String::from_utf8(body).map_err(|e| config(e.to_string()))?;
        let keys = parse_jwks(&body)?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(n)
    }

    fn current(&self) -> Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn parse_jwks(json: &str) -> Result<Vec<Key>, AuthError> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| AuthError::Config(e.to_string()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError::Config(e.to_string()))?;
        keys.push((jwk.common.key_id.clone(), key));
    }
    if keys.is_empty() {
        return Err(AuthError::Config("JWKS has no keys".into()));
    }
    Ok(keys)
}

/// A JWKS URL must be HTTPS; plain HTTP only to this machine (tests, a local sidecar). The
/// host is read from the parsed URL, so `http://localhost.evil.example` or
/// `http://127.0.0.1@evil.example` is not "this machine".
fn check_jwks_url(url: &str) -> Result<(), AuthError> {
    let refuse = || {
        AuthError::Config(format!(
            "AUTH_JWKS_URL must be https:// (plain http only to localhost), got `{url}`"
        ))
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| refuse())?;
    let local = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" if local => Ok(()),
        _ => Err(refuse()),
    }
}

/// What makes a token an access token rather than an ID token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessTokenRule {
    /// The header's `typ` is `at+jwt` (RFC 9068; `application/at+jwt` too).
    Typ,
    /// A claim with this value, for providers that do not set `typ` (e.g. `token_use=access`).
    Claim { name: String, value: String },
    /// No check: the keys sign access tokens only (service identities).
    None,
}

impl AccessTokenRule {
    /// `name=value` as in `AUTH_ACCESS_TOKEN_CLAIM`.
    pub fn claim(spec: &str) -> Result<Self, AuthError> {
        match spec.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => Ok(Self::Claim {
                name: name.trim().to_string(),
                value: value.trim().to_string(),
            }),
            _ => Err(AuthError::Config(format!(
                "AUTH_ACCESS_TOKEN_CLAIM must be `name=value`, got `{spec}`"
            ))),
        }
    }

    fn check(
        &self,
        header: &jsonwebtoken::Header,
        claims: &serde_json::Value,
    ) -> Result<(), AuthError> {
        let ok = match self {
            Self::Typ => header.typ.as_deref().is_some_and(|t| {
                let t = t.to_ascii_lowercase();
                t == ACCESS_TOKEN_TYP || t == "application/at+jwt"
            }),
            Self::Claim { name, value } => claims.get(name).is_some_and(|v| match v {
                serde_json::Value::String(s) => s == value,
                // `name=true` or `name=1` for a claim that is not a string.
                other => {
                    serde_json::from_str::<serde_json::Value>(value).is_ok_and(|v| &v == other)
                }
            }),
            Self::None => true,
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::Invalid(match self {
                Self::Typ => {
                    format!("not an access token (the JWT `typ` must be `{ACCESS_TOKEN_TYP}`)")
                }
                Self::Claim { name, value } => {
                    format!("not an access token (`{name}` must be `{value}`)")
                }
                Self::None => unreachable!(),
            }))
        }
    }
}

/// How other services prove who they are: tokens from the cluster's ServiceAccount issuer
/// (projected, audience-bound, rotated by the kubelet), whose `sub` is
/// `system:serviceaccount:<namespace>:<service>`.
#[derive(Clone)]
pub struct ServiceIdentities {
    verifier: Verifier,
    namespace: String,
}

impl ServiceIdentities {
    /// `verifier` carries the cluster issuer's keys, its `iss` and the audience projected
    /// tokens are minted for; `namespace` is where the services run.
    pub fn new(verifier: Verifier, namespace: &str) -> Self {
        let mut verifier = verifier;
        verifier.access = AccessTokenRule::None;
        verifier.services = None;
        Self {
            verifier,
            namespace: namespace.to_string(),
        }
    }

    fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let claims = self.verifier.verified_claims(token)?;
        let prefix = format!("system:serviceaccount:{}:", self.namespace);
        match claims.sub.strip_prefix(&prefix) {
            Some(name) if SERVICE_NAMES.contains(&name) => Ok(Caller::Service {
                name: name.to_string(),
            }),
            _ => Err(AuthError::Invalid(format!(
                "`{}` is not a Connectability service account",
                claims.sub
            ))),
        }
    }
}

/// Checks bearer tokens. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    keys: Keys,
    validation: Validation,
    access: AccessTokenRule,
    services: Option<Box<ServiceIdentities>>,
}

impl Verifier {
    /// HS256 with a shared secret (development and tests).
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(
            vec![(None, DecodingKey::from_secret(secret))],
            Algorithm::HS256,
        )
    }

    /// RS256 with a PEM-encoded public key.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, AuthError> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| AuthError::Config(e.to_string()))?;
        Ok(Self::new(vec![(None, key)], Algorithm::RS256))
    }

    /// RS256 with the keys of a JWKS document; a token's `kid` picks the key.
    pub fn rs256_jwks(json: &str) -> Result<Self, AuthError> {
        Ok(Self::new(parse_jwks(json)?, Algorithm::RS256))
    }

    /// RS256 with the keys an identity provider publishes at `url` (HTTPS). They are fetched
    /// now (an unreachable provider is a startup error), then every `refresh`, and again when
    /// a token names a key id they lack. Needs a Tokio runtime.
    pub async fn rs256_jwks_url(url: &str, refresh: Duration) -> Result<Self, AuthError> {
        check_jwks_url(url)?;
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AuthError::Config(e.to_string()))?;
        let remote = Arc::new(RemoteJwks {
            url: url.to_string(),
            client,
            keys: RwLock::new(Arc::new(Vec::new())),
            wake: Arc::new(tokio::sync::Notify::new()),
        });
        remote.fetch().await?;
        let (weak, wake) = (Arc::downgrade(&remote), remote.wake.clone());
        tokio::spawn(async move {
            let mut last = std::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(refresh) => {}
                    _ = wake.notified() => {
                        tokio::time::sleep(MIN_REFETCH.saturating_sub(last.elapsed())).await;
                    }
                }
                // The verifier is gone: stop.
                let Some(remote) = weak.upgrade() else { return };
                last = std::time::Instant::now();
                if let Err(e) = remote.fetch().await {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys in hand");
                }
            }
        });
        let mut v = Self::new(Vec::new(), Algorithm::RS256);
        v.keys = Keys::Remote(remote);
        Ok(v)
    }

    /// Accepts only tokens whose `iss` is `issuer` and whose `aud` names `audience`: a token
    /// the same identity provider issued for another application is refused.
    pub fn with_issuer_and_audience(
        mut self,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Self {
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = issuer {
            self.validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = audience {
            self.validation.set_audience(&[aud]);
            self.validation.validate_aud = true;
            required.push("aud");
        }
        self.validation.set_required_spec_claims(&required);
        self
    }

    fn new(keys: Vec<Key>, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        validation.leeway = 30;
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            keys: Keys::Fixed(Arc::new(keys)),
            validation,
            access: AccessTokenRule::Typ,
            services: None,
        }
    }

    /// Replaces the rule that tells access tokens from ID tokens (default: `typ: at+jwt`).
    pub fn with_access_token_rule(mut self, rule: AccessTokenRule) -> Self {
        self.access = rule;
        self
    }

    /// Services authenticate with their own ServiceAccount tokens; the `service` role in a
    /// token of these keys is then refused.
    pub fn with_service_identities(mut self, services: ServiceIdentities) -> Self {
        self.services = Some(Box::new(services));
        self
    }

    /// Verifies a raw JWT and returns who it names: a service when the cluster issuer signed
    /// it, else a user or operator.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let claims = match self.verified_claims(token) {
            Ok(claims) => claims,
            Err(e) => {
                return match &self.services {
                    Some(services) => services.verify(token).map_err(|_| e),
                    None => Err(e),
                };
            }
        };
        let caller = Caller::from_claims(claims);
        if self.services.is_some() && matches!(caller, Caller::Service { .. }) {
            return Err(AuthError::Invalid(
                "the `service` role is not accepted here: services present their ServiceAccount token".into(),
            ));
        }
        Ok(caller)
    }

    /// The claims of a token these keys signed, valid now, of the right issuer and audience,
    /// and an access token by this verifier's rule.
    fn verified_claims(&self, token: &str) -> Result<Claims, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let keys = match &self.keys {
            Keys::Fixed(keys) => keys.clone(),
            Keys::Remote(remote) => remote.current(),
        };
        let key = match &header.kid {
            Some(kid) => keys
                .iter()
                .find(|(k, _)| k.as_deref() == Some(kid.as_str()))
                .or_else(|| keys.iter().find(|(k, _)| k.is_none())),
            None => keys.first(),
        };
        let Some(key) = key else {
            if let Keys::Remote(remote) = &self.keys {
                // Perhaps the provider rotated its keys: look again soon.
                remote.wake.notify_one();
            }
            return Err(AuthError::Invalid("unknown key id".into()));
        };
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.1, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        self.access.check(&header, &data.claims)?;
        serde_json::from_value(data.claims).map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// Verifies the value of an `authorization` header (`Bearer <jwt>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let value = header.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::Invalid("authorization must be `Bearer <token>`".into()))?;
        self.verify(token.trim())
    }
}

/// Mints HS256 tokens. Only for development, tests, and service identities that share the secret.
#[derive(Clone)]
pub struct Issuer {
    key: EncodingKey,
}

impl Issuer {
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            key: EncodingKey::from_secret(secret),
        }
    }

    /// A token for `sub` with `roles`, valid for `ttl_secs`.
    pub fn mint(&self, sub: &str, roles: &[&str], ttl_secs: u64) -> String {
        let now = unix_now();
        self.mint_claims(&Claims {
            sub: sub.to_string(),
            iat: now,
            exp: now + ttl_secs,
            nbf: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        })
    }

    /// An access token (`typ: at+jwt`) with exactly these claims (tests use it for expired
    /// tokens).
    pub fn mint_claims(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        jsonwebtoken::encode(&header, claims, &self.key)
            .expect("HS256 encoding with a secret key cannot fail")
    }

    pub fn user(&self, user_id: &str) -> String {
        self.mint(user_id, &[], DEFAULT_TTL_SECS)
    }

    pub fn operator(&self) -> String {
        self.mint("operator", &[ROLE_OPERATOR], DEFAULT_TTL_SECS)
    }

    pub fn service(&self, name: &str) -> String {
        self.mint(name, &[ROLE_SERVICE], DEFAULT_TTL_SECS)
    }
}

/// Dev tokens live 30 days so a pasted grpcurl command keeps working.
pub const DEFAULT_TTL_SECS: u64 = 30 * 24 * 3600;

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A tonic interceptor that verifies the bearer token and puts the [`Caller`] into the
/// request's extensions; missing or bad tokens answer UNAUTHENTICATED.
#[derive(Clone)]
pub struct AuthInterceptor {
    verifier: Verifier,
}

impl AuthInterceptor {
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let header = req
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or_default());
        match self.verifier.verify_header(header) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                Ok(req)
            }
            Err(AuthError::Missing) => Err(tonic::Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata",
            )),
            Err(e) => Err(tonic::Status::unauthenticated(e.to_string())),
        }
    }
}

/// The caller the [`AuthInterceptor`] verified. UNAUTHENTICATED if the service was mounted
/// without it (a wiring bug, reported rather than panicking).
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated("no verified caller on this request"))
}

/// A client interceptor that adds a fixed bearer token to every call.
#[derive(Clone)]
pub struct BearerToken(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl BearerToken {
    pub fn new(token: &str) -> Self {
        Self(
            format!("Bearer {token}")
                .parse()
                .expect("a JWT is valid ASCII metadata"),
        )
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hs256_round_trip_and_roles() {
        let issuer = Issuer::hs256(b"secret");
        let verifier = Verifier::hs256(b"secret");
        assert_eq!(
            verifier.verify(&issuer.user("usr_a")).unwrap(),
            Caller::User {
                user_id: "usr_a".into()
            }
        );
        assert!(matches!(
            verifier.verify(&issuer.operator()).unwrap(),
            Caller::Operator { .. }
        ));
        assert!(matches!(
            verifier.verify(&issuer.service("x")).unwrap(),
            Caller::Service { .. }
        ));
    }

    #[test]
    fn wrong_secret_and_expired_tokens_are_rejected() {
        let verifier = Verifier::hs256(b"secret");
        let forged = Issuer::hs256(b"other").user("usr_a");
        assert!(matches!(
            verifier.verify(&forged),
            Err(AuthError::Invalid(_))
        ));
        let expired = Issuer::hs256(b"secret").mint_claims(&Claims {
            sub: "usr_a".into(),
            iat: 1,
            exp: 2,
            nbf: None,
            roles: vec![],
        });
        assert!(matches!(
            verifier.verify(&expired),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            verifier.verify_header(None),
            Err(AuthError::Missing)
        ));
    }

    /// An RSA key pair made for this test run only.
    fn rsa_keys() -> (EncodingKey, rsa::RsaPublicKey) {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let pem = private.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        (
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            private.to_public_key(),
        )
    }

    fn rs256_token(key: &EncodingKey, kid: Option<&str>, sub: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        header.kid = kid.map(str::to_string);
        let claims = Claims {
            sub: sub.into(),
            iat: unix_now(),
            exp: unix_now() + 60,
            nbf: None,
            roles: vec![],
        };
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    #[test]
    fn rs256_public_key_and_jwks_verify_tokens() {
        use base64::Engine as _;
        use rsa::{pkcs1::EncodeRsaPublicKey, traits::PublicKeyParts};
        let (signing, public) = rsa_keys();
        let pem = public.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        let by_pem = Verifier::rs256_pem(pem.as_bytes()).unwrap();
        assert_eq!(
            by_pem
                .verify(&rs256_token(&signing, None, "usr_a"))
                .unwrap(),
            Caller::User {
                user_id: "usr_a".into()
            }
        );

        let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwks = serde_json::json!({"keys": [{
            "kty": "RSA", "kid": "key-1", "use": "sig", "alg": "RS256",
            "n": b64(public.n().to_bytes_be()), "e": b64(public.e().to_bytes_be()),
        }]});
        let by_jwks = Verifier::rs256_jwks(&jwks.to_string()).unwrap();
        assert!(
            by_jwks
                .verify(&rs256_token(&signing, Some("key-1"), "usr_b"))
                .is_ok()
        );
        // A token signed by another key, or an HS256 token, is refused.
        let (other, _) = rsa_keys();
        assert!(
            by_jwks
                .verify(&rs256_token(&other, Some("key-1"), "usr_b"))
                .is_err()
        );
        assert!(
            by_jwks
                .verify(&Issuer::hs256(b"secret").user("usr_b"))
                .is_err()
        );
        assert!(Verifier::rs256_jwks(r#"{"keys":[]}"#).is_err());
    }

    fn jwk(kid: &str, public: &rsa::RsaPublicKey) -> serde_json::Value {
        use base64::Engine as _;
        use rsa::traits::PublicKeyParts;
        let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        serde_json::json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(public.n().to_bytes_be()), "e": b64(public.e().to_bytes_be()),
        })
    }

    /// A token from "the identity provider" with these issuer and audience claims.
    fn idp_token(key: &EncodingKey, kid: &str, iss: &str, aud: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        header.kid = Some(kid.into());
        let claims = serde_json::json!({
            "sub": "usr_idp", "iss": iss, "aud": aud,
            "iat": unix_now(), "exp": unix_now() + 60,
        });
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    /// Serves `jwks` (swappable) over HTTP on a loopback port; counts requests.
    async fn jwks_server(
        jwks: Arc<RwLock<String>>,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = jwks.read().unwrap().clone();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        (url, hits)
    }

    #[tokio::test]
    async fn jwks_by_url_checks_issuer_and_audience_and_follows_key_rotation() {
        let (key1, public1) = rsa_keys();
        let (key2, public2) = rsa_keys();
        let jwks = Arc::new(RwLock::new(
            serde_json::json!({"keys": [jwk("key-1", &public1)]}).to_string(),
        ));
        let (url, hits) = jwks_server(jwks.clone()).await;
        let (iss, aud) = ("https://idp.example", "connectability");
        let verifier = Verifier::rs256_jwks_url(&url, Duration::from_secs(3600))
            .await
            .unwrap()
            .with_issuer_and_audience(Some(iss), Some(aud));
        assert_eq!(
            verifier
                .verify(&idp_token(&key1, "key-1", iss, aud))
                .unwrap(),
            Caller::User {
                user_id: "usr_idp".into()
            }
        );
        // Another issuer, or a token for another application, is refused.
        for (i, a) in [("https://evil.example", aud), (iss, "another-app")] {
            assert!(matches!(
                verifier.verify(&idp_token(&key1, "key-1", i, a)),
                Err(AuthError::Invalid(_))
            ));
        }
        // The provider rotates: key-2 replaces key-1. A token with the new kid is refused
        // until the keys are fetched again, which that very token prompts.
        *jwks.write().unwrap() = serde_json::json!({"keys": [jwk("key-2", &public2)]}).to_string();
        let rotated = idp_token(&key2, "key-2", iss, aud);
        let before = hits.load(std::sync::atomic::Ordering::SeqCst);
        let deadline = std::time::Instant::now() + MIN_REFETCH + Duration::from_secs(10);
        while verifier.verify(&rotated).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the rotated key was never fetched"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(hits.load(std::sync::atomic::Ordering::SeqCst) > before);
        assert!(
            verifier
                .verify(&idp_token(&key1, "key-1", iss, aud))
                .is_err(),
            "a retired key no longer verifies"
        );
    }

    #[tokio::test]
    async fn jwks_urls_must_be_https_and_reachable() {
        for url in [
            "http://idp.example/jwks.json",
            "ftp://idp.example/jwks.json",
        ] {
            assert!(matches!(
                Verifier::rs256_jwks_url(url, Duration::from_secs(60)).await,
                Err(AuthError::Config(_))
            ));
        }
        // Nothing listens there: a startup error, not a verifier without keys.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(
            Verifier::rs256_jwks_url(
                &format!("http://127.0.0.1:{port}/jwks"),
                Duration::from_secs(60)
            )
            .await
            .is_err()
        );
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::Engine as _;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = format!(
            "{}.{}.",
            b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(serde_json::json!({"sub": "usr_a", "exp": unix_now() + 60, "roles": ["operator"]}))
        );
        assert!(Verifier::hs256(b"secret").verify(&token).is_err());
        let (_, public) = rsa_keys();
        let jwks = serde_json::json!({"keys": [jwk("key-1", &public)]}).to_string();
        assert!(Verifier::rs256_jwks(&jwks).unwrap().verify(&token).is_err());
    }

    #[test]
    fn not_yet_valid_and_id_tokens_are_refused() {
        let issuer = Issuer::hs256(b"secret");
        let verifier = Verifier::hs256(b"secret");
        let later = issuer.mint_claims(&Claims {
            sub: "usr_a".into(),
            iat: unix_now(),
            exp: unix_now() + 3600,
            nbf: Some(unix_now() + 600),
            roles: vec![],
        });
        assert!(verifier.verify(&later).is_err(), "nbf in the future");
        // An ID token (`typ: JWT`) from the same keys is not an access token.
        let claims = serde_json::json!({"sub": "usr_a", "exp": unix_now() + 60});
        let id_token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        let e = verifier.verify(&id_token).unwrap_err().to_string();
        assert!(e.contains("at+jwt"), "{e}");
        // A provider that marks access tokens by a claim instead.
        let by_claim = Verifier::hs256(b"secret")
            .with_access_token_rule(AccessTokenRule::claim("token_use=access").unwrap());
        assert!(by_claim.verify(&id_token).is_err());
        let access = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "usr_a", "exp": unix_now() + 60, "token_use": "access"}),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(by_claim.verify(&access).is_ok());
        assert!(AccessTokenRule::claim("no-equals-sign").is_err());
    }

    #[test]
    fn jwks_urls_are_judged_by_their_parsed_host() {
        for ok in [
            "https://idp.example/jwks.json",
            "http://localhost:8080/jwks",
            "http://127.0.0.1/jwks",
            "http://[::1]:9/jwks",
        ] {
            assert!(check_jwks_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example/jwks",
            "http://127.0.0.1.evil.example/jwks",
            "http://127.0.0.1:80@evil.example/jwks",
            "http://evil.example/jwks#http://localhost/",
            "not a url",
        ] {
            assert!(check_jwks_url(bad).is_err(), "{bad}");
        }
    }

    /// A projected ServiceAccount token as the kubelet gets it from the cluster issuer.
    fn sa_token(key: &EncodingKey, sub: &str, aud: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("cluster-1".into());
        let claims = serde_json::json!({
            "iss": "https://kubernetes.default.svc", "aud": [aud], "sub": sub,
            "iat": unix_now(), "nbf": unix_now(), "exp": unix_now() + 600,
            "kubernetes.io": {"namespace": "connectability", "serviceaccount": {"name": "rfi-sync"}},
        });
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    #[test]
    fn services_are_known_by_their_service_account_tokens_only() {
        let (cluster_key, cluster_public) = rsa_keys();
        let jwks = serde_json::json!({"keys": [jwk("cluster-1", &cluster_public)]}).to_string();
        let services = ServiceIdentities::new(
            Verifier::rs256_jwks(&jwks)
                .unwrap()
                .with_issuer_and_audience(
                    Some("https://kubernetes.default.svc"),
                    Some("connectability"),
                ),
            "connectability",
        );
        let verifier = Verifier::hs256(b"secret").with_service_identities(services);
        let sa = |sub: &str, aud: &str| sa_token(&cluster_key, sub, aud);
        assert_eq!(
            verifier
                .verify(&sa(
                    "system:serviceaccount:connectability:rfi-sync",
                    "connectability"
                ))
                .unwrap(),
            Caller::Service {
                name: "rfi-sync".into()
            }
        );
        for (sub, aud) in [
            // another namespace, an unknown account, a token for another audience
            ("system:serviceaccount:other:rfi-sync", "connectability"),
            (
                "system:serviceaccount:connectability:default",
                "connectability",
            ),
            (
                "system:serviceaccount:connectability:rfi-sync",
                "https://kubernetes.default.svc",
            ),
        ] {
            assert!(verifier.verify(&sa(sub, aud)).is_err(), "{sub} {aud}");
        }
        // The shared `service` role no longer makes anyone a service; users still verify.
        let issuer = Issuer::hs256(b"secret");
        assert!(verifier.verify(&issuer.service("rfi-sync")).is_err());
        assert!(verifier.verify(&issuer.user("usr_a")).is_ok());
    }
}
