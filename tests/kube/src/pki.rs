//! The certificates and keys a throwaway control plane needs, made fresh for every start
//! (nothing is reused between runs, nothing leaves the temp dir).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A PEM certificate and its PKCS#8 PEM private key.
#[derive(Clone, Debug)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Everything the control plane's TLS and token signing use.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The cluster CA: signs serving and client certs; clients trust it.
    pub ca: CertAndKey,
    /// kube-apiserver's serving cert (127.0.0.1, localhost and the in-cluster names).
    pub apiserver: CertAndKey,
    /// The admin client cert (group `system:masters`).
    pub admin: CertAndKey,
    /// Signs ServiceAccount tokens (private key PEM); `service_account_public_pem` verifies them.
    pub service_account_key_pem: String,
    pub service_account_public_pem: String,
}

/// Names the apiserver is reached by: loopback from here, the in-cluster names from pods.
const APISERVER_NAMES: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.96.0.1",
];

impl Pki {
    pub fn generate() -> Result<Pki, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "dispatch-test-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = CertAndKey {
            cert_pem: ca_cert.pem(),
            key_pem: ca_key.serialize_pem(),
        };
        let issuer = Issuer::new(ca_params, ca_key);

        let names: Vec<String> = APISERVER_NAMES.iter().map(|s| s.to_string()).collect();
        let apiserver = leaf(
            &issuer,
            names,
            "kube-apiserver",
            None,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let admin = leaf(
            &issuer,
            vec![],
            "dispatch-admin",
            Some("system:masters"),
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let sa_key = KeyPair::generate()?;
        Ok(Pki {
            ca,
            apiserver,
            admin,
            service_account_key_pem: sa_key.serialize_pem(),
            service_account_public_pem: sa_key.public_key_pem(),
        })
    }
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    sans: Vec<String>,
    common_name: &str,
    organization: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertAndKey, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_distinct_pem_material() {
        let pki = Pki::generate().expect("pki");
        assert!(pki.ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.admin.key_pem.contains("PRIVATE KEY"));
        assert!(pki.service_account_public_pem.contains("PUBLIC KEY"));
        assert_ne!(pki.admin.cert_pem, pki.apiserver.cert_pem);
        assert_ne!(pki.apiserver.key_pem, pki.admin.key_pem);
    }
}
