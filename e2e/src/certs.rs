//! Certificates for the local control plane: a CA the clients verify, the
//! apiserver's serving certificate, and the service-account signing key.

use std::path::Path;

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// Paths of the generated files.
#[derive(Debug)]
pub(crate) struct Certs {
    pub ca_pem: String,
}

/// Writes `ca.crt`, `apiserver.crt`, `apiserver.key`, `sa.key` and `sa.pub` into `dir`.
pub(crate) fn generate(dir: &Path) -> Result<Certs> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name.push(DnType::CommonName, "winky-e2e-ca");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let sa_key = KeyPair::generate()?;
    std::fs::write(dir.join("ca.crt"), ca_cert.pem())?;
    std::fs::write(dir.join("apiserver.crt"), server_cert.pem())?;
    std::fs::write(dir.join("apiserver.key"), server_key.serialize_pem())?;
    std::fs::write(dir.join("sa.key"), sa_key.serialize_pem())?;
    // kube-apiserver reads verification keys as public keys, not PKCS#8.
    std::fs::write(dir.join("sa.pub"), sa_key.public_key_pem())?;
    Ok(Certs {
        ca_pem: ca_cert.pem(),
    })
}
