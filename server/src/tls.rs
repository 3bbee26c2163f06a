//! HTTPS: the certificate chain and key from PEM files (`--tls-cert`,
//! `--tls-key`), swapped in place when they are read again (SIGHUP), so a
//! renewed certificate needs no restart. rustls with ring: no OpenSSL.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The one crypto provider: ring (the only one compiled in).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's certificate, read from its files; every handshake takes the
/// one current at that moment.
#[derive(Debug)]
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Read both files; an error says which file and why.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificates>, String> {
        let provider = provider();
        let current = read(cert, key, &provider)?;
        Ok(Arc::new(Certificates {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(current)),
        }))
    }

    /// Read the files again. On error the certificate in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = read(&self.cert, &self.key, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// The certificate chain in use (DER), leaf first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cert
            .clone()
    }

    /// A rustls server configuration that asks this resolver for every
    /// handshake. actix adds the ALPN protocols (h2, http/1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, String> {
        let resolver: Arc<dyn ResolvesServerCert> = self.clone();
        Ok(
            rustls::ServerConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .with_no_client_auth()
                .with_cert_resolver(resolver),
        )
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Every certificate of a PEM file, at least one; errors name `flag`.
pub fn read_certificates(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no CERTIFICATE in the file",
            path.display()
        ));
    }
    Ok(certs)
}

fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain = read_certificates(cert, "--tls-cert")?;
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        format!(
            "--tls-cert {} with --tls-key {}: {e}",
            cert.display(),
            key.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files(PathBuf);

    impl Files {
        fn new(label: &str) -> Files {
            let dir = std::env::temp_dir().join(format!(
                "whis-tls-{label}-{}-{:x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Files(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).expect("write");
            p
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn made(name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("rcgen");
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    #[test]
    fn a_reload_swaps_the_certificate_and_a_bad_one_keeps_the_old() {
        let files = Files::new("reload");
        let (cert_a, key_a) = made("a.test");
        let cert = files.write("cert.pem", &cert_a);
        let key = files.write("key.pem", &key_a);
        let certs = Certificates::load(&cert, &key).expect("loads");
        let first = certs.chain();
        certs.server_config().expect("a server config");

        let (cert_b, key_b) = made("b.test");
        files.write("cert.pem", &cert_b);
        // The new certificate with the old key: refused, the old one stays.
        let err = certs.reload().expect_err("mismatched key");
        assert!(err.contains("--tls-key"), "{err}");
        assert_eq!(certs.chain(), first);
        files.write("key.pem", &key_b);
        certs.reload().expect("renewed");
        assert_ne!(certs.chain(), first);
    }

    #[test]
    fn unreadable_or_empty_files_say_which_and_why() {
        let files = Files::new("bad");
        let (cert_a, key_a) = made("a.test");
        let cert = files.write("cert.pem", &cert_a);
        let key = files.write("key.pem", &key_a);
        let empty = files.write("empty.pem", "");
        let garbage = files.write("garbage.pem", "-----BEGIN PRIVATE KEY-----\nnot base64!\n");
        let missing = files.0.join("missing.pem");
        for (c, k, expect) in [
            (&missing, &key, "--tls-cert"),
            (&empty, &key, "no CERTIFICATE"),
            (&cert, &missing, "--tls-key"),
            (&cert, &empty, "--tls-key"),
            (&cert, &garbage, "--tls-key"),
            (&key, &cert, "--tls-cert"),
        ] {
            let err = Certificates::load(c, k).expect_err("refused");
            assert!(err.contains(expect), "{c:?} {k:?}: {err}");
        }
    }
}
