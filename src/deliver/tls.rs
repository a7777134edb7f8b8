//! The TLS client configuration shared by every outbound TLS connection
//! (HTTPS and syslog over `tls://`): rustls with the ring provider, the
//! webpki (Mozilla) roots, plus the certificates of `network.ca_file` when
//! one is set.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// `network.ca_file` could not be used.
#[derive(Debug, thiserror::Error)]
#[error("network.ca_file {path}: {message}")]
pub struct CaFileError {
    pub path: PathBuf,
    pub message: String,
}

/// A client configuration trusting the webpki roots and, when `ca_file` is
/// given, every certificate in that PEM file. A file that cannot be read,
/// holds no certificate, or holds one that cannot be a trust anchor is an
/// error: a CA the operator asked for is never silently left out.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, CaFileError> {
    match ca_file {
        None => Ok(webpki_config()),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| CaFileError {
                path: path.to_owned(),
                message: format!("cannot read: {e}"),
            })?;
            config_with_pem(path, &pem)
        }
    }
}

/// The webpki roots only.
pub fn webpki_config() -> Arc<ClientConfig> {
    build(webpki_roots())
}

/// The webpki roots plus the certificates of `pem` (the contents of `path`).
pub fn config_with_pem(path: &Path, pem: &[u8]) -> Result<Arc<ClientConfig>, CaFileError> {
    let err = |message: String| CaFileError {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err(
            "holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----` blocks)".into(),
        ));
    }
    let total = certs.len();
    let mut roots = webpki_roots();
    let (_, ignored) = roots.add_parsable_certificates(certs);
    if ignored > 0 {
        return Err(err(format!(
            "{ignored} of its {total} certificates cannot be used as a trust anchor"
        )));
    }
    Ok(build(roots))
}

fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn build(roots: RootCertStore) -> Arc<ClientConfig> {
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            // The ring provider supports TLS 1.2 and 1.3: this cannot fail.
            .expect("the ring provider supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_file_the_webpki_roots_are_trusted() {
        assert!(client_config(None).is_ok());
    }

    #[test]
    fn a_missing_or_empty_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = client_config(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("nope.pem") && e.contains("cannot read"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err().to_string();
        assert!(e.contains("holds no certificate"), "{e}");
    }

    #[test]
    fn a_pem_ca_is_trusted_in_addition_to_the_webpki_roots() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        assert!(client_config(Some(&path)).is_ok());
    }
}
