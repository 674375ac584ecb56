//! Who is calling: JWT verification (HS256 shared secret in dev, RS256 public key or a JWKS
//! document in production), the [`Caller`] put on every request, and dev token minting.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};

/// The role claim that makes a token an operator's (creates companies, sees everything).
pub const ROLE_OPERATOR: &str = "operator";
/// The role claim of service-to-service calls (e.g. asking the directory for access).
pub const ROLE_SERVICE: &str = "service";

/// The claims Connectability reads. `sub` is a user id (`usr_…`), an operator name or a
/// service name; `roles` says which.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
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

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("auth configuration: {0}")]
    Config(String),
}

/// Checks bearer tokens. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    keys: std::sync::Arc<Vec<(Option<String>, DecodingKey)>>,
    validation: Validation,
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
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| AuthError::Config(e.to_string()))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError::Config(e.to_string()))?;
            keys.push((jwk.common.key_id.clone(), key));
        }
        if keys.is_empty() {
            return Err(AuthError::Config("JWKS has no keys".into()));
        }
        Ok(Self::new(keys, Algorithm::RS256))
    }

    fn new(keys: Vec<(Option<String>, DecodingKey)>, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        validation.leeway = 30;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            keys: std::sync::Arc::new(keys),
            validation,
        }
    }

    /// Verifies a raw JWT and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|(k, _)| k.as_deref() == Some(kid.as_str()))
                .or_else(|| self.keys.iter().find(|(k, _)| k.is_none())),
            None => self.keys.first(),
        }
        .ok_or_else(|| AuthError::Invalid("unknown key id".into()))?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.1, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        Ok(Caller::from_claims(data.claims))
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
            roles: roles.iter().map(|r| r.to_string()).collect(),
        })
    }

    /// A token with exactly these claims (tests use it for expired tokens).
    pub fn mint_claims(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.key)
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
        header.kid = kid.map(str::to_string);
        let claims = Claims {
            sub: sub.into(),
            iat: unix_now(),
            exp: unix_now() + 60,
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
}
