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
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    /// A private CA named `ca_name` (PEM) and a `localhost` server
    /// certificate signed by it.
    struct PrivatePki {
        ca_pem: String,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    }

    fn private_pki(ca_name: &str) -> PrivatePki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ca_name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        PrivatePki {
            ca_pem: ca.pem(),
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }

    /// A whole TLS handshake in memory: a client with `config` connects to
    /// `localhost`, served with `pki`'s certificate. The client's verdict on
    /// the certificate is the result.
    fn handshake(config: Arc<ClientConfig>, pki: &PrivatePki) -> Result<(), rustls::Error> {
        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(config, name)?;
        let mut server = rustls::ServerConnection::new(Arc::new(server_config))?;
        // A TLS 1.3 handshake takes two flights each way; bounded anyway.
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            let mut rd = wire.as_slice();
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
                server.process_new_packets()?;
            }
            let mut wire = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            let mut rd = wire.as_slice();
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets()?;
            }
        }
        panic!("the in-memory handshake did not finish in 10 rounds");
    }

    /// rustls shows a built config's trust anchors only through `Debug`
    /// (`RootCertStore { roots: "(N roots)" }`): the count in `config`.
    fn root_count(config: &ClientConfig) -> String {
        let debug = format!("{config:?}");
        let start = debug.find("roots: \"(").expect("the roots in Debug") + "roots: \"(".len();
        debug[start..].split(' ').next().unwrap().to_owned()
    }

    #[test]
    fn without_a_file_the_webpki_roots_and_nothing_else_are_trusted() {
        let config = client_config(None).unwrap();
        assert_eq!(
            root_count(&config),
            webpki_roots::TLS_SERVER_ROOTS.len().to_string()
        );
        // A certificate from a CA outside them is refused.
        let e = handshake(config, &private_pki("some private CA")).unwrap_err();
        assert_eq!(
            e,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            "{e}"
        );
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
        let pki = private_pki("the operator's CA");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, &pki.ca_pem).unwrap();
        let config = client_config(Some(&path)).unwrap();
        // The server's certificate, signed by that CA, is accepted...
        handshake(config.clone(), &pki).expect("a certificate of the CA in ca_file is trusted");
        // ...and the webpki roots are all still there, plus this one.
        assert_eq!(
            root_count(&config),
            (webpki_roots::TLS_SERVER_ROOTS.len() + 1).to_string()
        );
        // Another CA's certificate is still refused.
        let e = handshake(config, &private_pki("another CA")).unwrap_err();
        assert_eq!(
            e,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            "{e}"
        );
    }
}
