//! TLS on the client listeners: certificate chains and keys read from PEM files, the names
//! each certificate is good for (its DNS subject alternative names), and the choice of a
//! certificate by the name a client asks for (SNI). `resolver` hands rustls the current set,
//! which a reload swaps without touching connections already made.

mod resolver;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

pub use resolver::SniResolver;

/// One certificate the listeners can present.
pub struct Certificate {
    /// The DNS names it is good for, lowercase; `*.example.com` covers one label.
    pub names: Vec<String>,
    /// When it stops being valid.
    pub not_after: SystemTime,
    key: Arc<CertifiedKey>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The certificates of the listeners, in configuration order: the first answers clients that
/// name no server (connections by address).
#[derive(Debug, Clone)]
pub struct Certificates(Arc<[Certificate]>);

impl PartialEq for Certificates {
    /// The same certificates, by their chains' bytes.
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(other.0.iter())
                .all(|(a, b)| a.key.cert == b.key.cert)
    }
}

impl Certificates {
    pub fn new(certificates: Vec<Certificate>) -> Self {
        Certificates(certificates.into())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Certificate> {
        self.0.iter()
    }

    /// The certificate for a client that asked for `server_name`: the first whose names cover
    /// it; with no name asked, the first of all. A name no certificate covers gets none, and
    /// the handshake fails: the client is not shown another site's certificate.
    pub fn choose(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        match server_name {
            None => self.0.first().map(|c| &c.key),
            Some(name) => self
                .0
                .iter()
                .find(|c| c.names.iter().any(|n| covers(n, name)))
                .map(|c| &c.key),
        }
    }
}

/// Whether a certificate name covers `server_name` (RFC 6125: exact, ignoring ASCII case, or
/// a leading `*` standing for exactly one whole label).
pub fn covers(name: &str, server_name: &str) -> bool {
    let server_name = server_name.strip_suffix('.').unwrap_or(server_name);
    match name.strip_prefix("*.") {
        Some(parent) => server_name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(parent)),
        None => name.eq_ignore_ascii_case(server_name),
    }
}

/// Reads the CA certificates of a PEM file (DER each), for verifying backends: at least one,
/// each one a parseable X.509 certificate.
pub fn load_ca(file: &Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", file.display()));
    }
    for (i, cert) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
            format!(
                "{}: certificate {} does not parse: {e}",
                file.display(),
                i + 1
            )
        })?;
    }
    Ok(certs.into_iter().map(|c| c.as_ref().to_vec()).collect())
}

/// Reads a certificate chain (leaf first) and its private key from PEM files, checks that they
/// belong together and that the leaf is valid at `now`, and reads the names it covers.
pub fn load(chain_file: &Path, key_file: &Path, now: SystemTime) -> Result<Certificate, String> {
    let chain_pem = std::fs::read(chain_file)
        .map_err(|e| format!("cannot read {}: {e}", chain_file.display()))?;
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{} is not a PEM certificate chain: {e}",
                chain_file.display()
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{} holds no PEM certificate", chain_file.display()));
    };
    let key_pem =
        std::fs::read(key_file).map_err(|e| format!("cannot read {}: {e}", key_file.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{} holds no PEM private key: {e}", key_file.display()))?;
    let (names, not_before, not_after) = read_leaf(leaf.as_ref())
        .map_err(|e| format!("{}: the first certificate {e}", chain_file.display()))?;
    if names.is_empty() {
        return Err(format!(
            "{}: the certificate names no DNS subject alternative name",
            chain_file.display()
        ));
    }
    if not_after <= now {
        return Err(format!(
            "{}: the certificate expired {} (valid until {})",
            chain_file.display(),
            ago(now, not_after),
            humantime::format_rfc3339_seconds(not_after)
        ));
    }
    if not_before > now {
        return Err(format!(
            "{}: the certificate is not valid before {}",
            chain_file.display(),
            humantime::format_rfc3339_seconds(not_before)
        ));
    }
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        format!(
            "{}: the key is not one TLS can use (RSA, ECDSA P-256/P-384 or Ed25519): {e}",
            key_file.display()
        )
    })?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|_| {
        format!(
            "{} is not the private key of the certificate in {}",
            key_file.display(),
            chain_file.display()
        )
    })?;
    Ok(Certificate {
        names,
        not_after,
        key: Arc::new(key),
    })
}

fn ago(now: SystemTime, then: SystemTime) -> String {
    let elapsed = now.duration_since(then).unwrap_or_default();
    let rounded = Duration::from_secs(elapsed.as_secs() / 60 * 60);
    format!("{} ago", humantime::format_duration(rounded))
}

/// The DNS names of a leaf certificate and its validity period.
fn read_leaf(der: &[u8]) -> Result<(Vec<String>, SystemTime, SystemTime), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("is not an X.509 certificate: {e}"))?;
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("has a malformed subject alternative name: {e}")),
    };
    let time = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH
        }
    };
    let validity = cert.validity();
    Ok((names, time(validity.not_before), time(validity.not_after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_exactly_or_by_one_wildcard_label() {
        assert!(covers("app.example.com", "app.example.com"));
        assert!(covers("app.example.com", "APP.Example.com"));
        assert!(covers("app.example.com", "app.example.com."));
        assert!(!covers("app.example.com", "example.com"));
        assert!(!covers("app.example.com", "xapp.example.com"));
        assert!(covers("*.example.com", "app.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", ".example.com"));
        assert!(!covers("*.example.com", "app.example.org"));
    }

    fn pem_pair(names: &[&str]) -> (tempfile::TempDir, Certificate) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        let loaded = load(
            &dir.path().join("c.pem"),
            &dir.path().join("k.pem"),
            SystemTime::now(),
        );
        (dir, loaded.expect("loads"))
    }

    #[test]
    fn the_certificate_is_chosen_by_the_name_asked_for() {
        let (_a, a) = pem_pair(&["a.example"]);
        let (_b, b) = pem_pair(&["*.b.example", "b.example"]);
        let a_key = a.key.clone();
        let b_key = b.key.clone();
        let set = Certificates::new(vec![a, b]);
        assert!(Arc::ptr_eq(set.choose(None).unwrap(), &a_key));
        assert!(Arc::ptr_eq(set.choose(Some("a.example")).unwrap(), &a_key));
        assert!(Arc::ptr_eq(
            set.choose(Some("x.b.example")).unwrap(),
            &b_key
        ));
        assert!(Arc::ptr_eq(set.choose(Some("B.EXAMPLE")).unwrap(), &b_key));
        assert!(set.choose(Some("c.example")).is_none());
        assert!(set.choose(Some("x.a.example")).is_none());
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let missing = load(&dir.path().join("none"), &dir.path().join("none"), now);
        assert!(missing.unwrap_err().starts_with("cannot read"));

        std::fs::write(dir.path().join("empty.pem"), "nothing here\n").unwrap();
        let empty = load(
            &dir.path().join("empty.pem"),
            &dir.path().join("empty.pem"),
            now,
        );
        assert!(empty.unwrap_err().contains("holds no PEM certificate"));

        // Two valid pairs, crossed: each key belongs to the other certificate.
        let (d1, _) = pem_pair(&["one.example"]);
        let (d2, _) = pem_pair(&["two.example"]);
        let crossed = load(&d1.path().join("c.pem"), &d2.path().join("k.pem"), now);
        assert!(crossed
            .unwrap_err()
            .contains("is not the private key of the certificate"));

        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("old.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("old.key"), key.serialize_pem()).unwrap();
        let no_names = load(
            &dir.path().join("old.pem"),
            &dir.path().join("old.key"),
            now,
        );
        assert!(no_names
            .unwrap_err()
            .contains("no DNS subject alternative name"));
    }

    #[test]
    fn an_expired_certificate_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.example".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        let err = load(
            &dir.path().join("c.pem"),
            &dir.path().join("k.pem"),
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(err.contains("the certificate expired"), "{err}");
        assert!(err.contains("2021-01-01T00:00:00Z"), "{err}");
        // The same files on a day the certificate was valid.
        let then = UNIX_EPOCH + Duration::from_secs(1_590_000_000); // May 2020
        assert!(load(&dir.path().join("c.pem"), &dir.path().join("k.pem"), then).is_ok());
    }
}
