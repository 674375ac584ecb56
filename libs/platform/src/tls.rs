//! TLS for gRPC between services (and for API clients): a server presents its certificate
//! (GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE) on GRPC_ADDR; peers named by `https://…` URLs
//! are verified against GRPC_TLS_CA_FILE, with the URL's host as the name the certificate
//! must carry. The kubelet's gRPC probes speak no TLS, so a TLS server also answers health
//! checks, and only those, in plaintext on HEALTH_ADDR.

use std::{path::PathBuf, sync::OnceLock};

use anyhow::Context as _;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The CA that `https://` peers are verified against, once set at startup.
static PEER_CA: OnceLock<Certificate> = OnceLock::new();

/// Reads the TLS files of these settings: the server's config when a certificate is set,
/// and the peers' CA (kept for [`client_config`]).
pub fn load(
    cert_file: Option<&PathBuf>,
    key_file: Option<&PathBuf>,
    ca_file: Option<&PathBuf>,
) -> anyhow::Result<Option<ServerTlsConfig>> {
    connectability_auth::install_crypto_provider();
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)
            .with_context(|| format!("reading GRPC_TLS_CA_FILE {}", ca.display()))?;
        let _ = PEER_CA.set(Certificate::from_pem(pem));
    }
    match (cert_file, key_file) {
        (Some(cert), Some(key)) => {
            let cert = std::fs::read(cert)
                .with_context(|| format!("reading GRPC_TLS_CERT_FILE {}", cert.display()))?;
            let key = std::fs::read(key)
                .with_context(|| format!("reading GRPC_TLS_KEY_FILE {}", key.display()))?;
            Ok(Some(
                ServerTlsConfig::new().identity(Identity::from_pem(cert, key)),
            ))
        }
        (None, None) => Ok(None),
        _ => anyhow::bail!("set both GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE, or neither"),
    }
}

/// The client TLS for an `https://host:port` peer: the CA from GRPC_TLS_CA_FILE, and the
/// host as the name its certificate must carry.
pub fn client_config(host: &str) -> anyhow::Result<ClientTlsConfig> {
    let ca = PEER_CA.get().cloned().with_context(|| {
        format!(
            "`https://{host}` needs GRPC_TLS_CA_FILE: the CA that signs the services' certificates"
        )
    })?;
    Ok(ClientTlsConfig::new().ca_certificate(ca).domain_name(host))
}
