//! TLS for the streaming server (`[cri] stream_tls = true`), as
//! containerd does it: a self-signed certificate made at start-up for the
//! address the server listens on (and `localhost`), its key kept in
//! memory only. The kubelet does not verify the streaming server's
//! certificate; for clients that want to, the certificate (PEM, public)
//! is written to a file beside berthd's CRI state.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub(super) enum TlsError {
    /// the certificate could not be made
    #[error("streaming TLS: certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration
    #[error("streaming TLS: {0}")]
    Config(#[from] rustls::Error),
    /// the certificate file could not be written
    #[error("streaming TLS: write {path}: {source}")]
    Write {
        /// the file
        path: String,
        /// why
        source: std::io::Error,
    },
}

/// The names a certificate for `ip` covers: the address (loopback when
/// it listens on every address) and `localhost`.
fn names(ip: IpAddr) -> Vec<String> {
    let mut v = Vec::new();
    if ip.is_unspecified() {
        v.push("127.0.0.1".to_string());
        v.push("::1".to_string());
    } else {
        v.push(ip.to_string());
    }
    v.push("localhost".to_string());
    v
}

/// A TLS acceptor with a fresh self-signed certificate for `ip`, also
/// written (PEM) to `cert_file`. HTTP/1.1 only (SPDY is an HTTP/1.1
/// upgrade).
pub(super) fn acceptor(ip: IpAddr, cert_file: &Path) -> Result<TlsAcceptor, TlsError> {
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names(ip))?;
    let write_err = |source| TlsError::Write {
        path: cert_file.display().to_string(),
        source,
    };
    if let Some(dir) = cert_file.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    std::fs::write(cert_file, cert.pem()).map_err(write_err)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_the_address() {
        assert_eq!(
            names("10.1.2.3".parse().unwrap()),
            ["10.1.2.3", "localhost"]
        );
        assert_eq!(
            names("0.0.0.0".parse().unwrap()),
            ["127.0.0.1", "::1", "localhost"]
        );
    }

    #[test]
    fn a_certificate_is_made_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x/stream.crt");
        acceptor("127.0.0.1".parse().unwrap(), &file).unwrap();
        let pem = std::fs::read_to_string(&file).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    }
}
