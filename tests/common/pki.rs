//! Certificates made for a test: a private CA and the certificates it issues (for names or
//! addresses, current or expired), written as PEM files in a temporary directory.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A private CA whose certificate is `ca.crt` in its directory.
pub struct Pki {
    dir: Arc<tempfile::TempDir>,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate's chain and key files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub chain: PathBuf,
    pub key: PathBuf,
}

/// How long an issued certificate is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Current,
    Expired,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
            .expect("CA certificate");
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).expect("writes the CA");
        Pki {
            dir: Arc::new(dir),
            ca,
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate's file.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A certificate for `names` (DNS names or IP addresses), as `<stem>.crt` (leaf then CA)
    /// and `<stem>.key`.
    pub fn issue(&self, stem: &str, names: &[&str], validity: Validity) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if validity == Validity::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.ca).expect("certificate");
        let issued = Issued {
            chain: self.path(&format!("{stem}.crt")),
            key: self.path(&format!("{stem}.key")),
        };
        std::fs::write(&issued.chain, format!("{}{}", cert.pem(), self.ca.pem()))
            .expect("writes the chain");
        std::fs::write(&issued.key, key.serialize_pem()).expect("writes the key");
        issued
    }
}
