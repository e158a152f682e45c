//! uatap's own application instance certificate: a self-signed X.509 certificate with the
//! extensions OPC UA servers check (OPC 10000-6 §6.2.2), for the probe to open secured channels.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::CryptoError;
use crate::keys::{Certificate, PrivateKey};

/// What goes into an application instance certificate.
#[derive(Debug, Clone)]
pub struct ApplicationIdentity {
    /// The ApplicationUri, written as the SubjectAltName URI; CreateSession's
    /// ClientDescription.ApplicationUri must be the same (Bad_CertificateUriInvalid otherwise).
    pub application_uri: String,
    /// The host name, written as a SubjectAltName DNS name.
    pub hostname: String,
    /// The subject CommonName, what a server's trust list shows.
    pub common_name: String,
    /// How long the certificate is valid from now.
    pub valid_for: Duration,
}

/// A fresh self-signed application instance certificate for `key`, with the SubjectAltName
/// (URI and DNS), KeyUsage and ExtendedKeyUsage OPC UA servers check.
pub fn generate_application_certificate(
    key: &PrivateKey,
    id: &ApplicationIdentity,
) -> Result<Certificate, CryptoError> {
    let bad = |e: rcgen::Error| CryptoError::Key(format!("cannot build the certificate: {e}"));
    let pair = KeyPair::try_from(key.pkcs8_der()).map_err(bad)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id.common_name.as_str());
    dn.push(DnType::OrganizationName, "uatap");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        SanType::URI(id.application_uri.as_str().try_into().map_err(bad)?),
        SanType::DnsName(id.hostname.as_str().try_into().map_err(bad)?),
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DataEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    // A day back, for servers whose clock is a little behind ours.
    let now = SystemTime::now();
    let from = now
        .checked_sub(Duration::from_secs(86_400))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let to = now.checked_add(id.valid_for).unwrap_or(now);
    params.not_before = from.into();
    params.not_after = to.into();
    let cert = params.self_signed(&pair).map_err(bad)?;
    Certificate::from_der(cert.der())
}

/// The key as PEM (`PRIVATE KEY`, PKCS#8), to keep it next to the certificate.
pub fn private_key_pem(key: &PrivateKey) -> Result<String, CryptoError> {
    let pair = KeyPair::try_from(key.pkcs8_der())
        .map_err(|e| CryptoError::Key(format!("cannot export the key: {e}")))?;
    Ok(pair.serialize_pem())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn the_certificate_carries_what_servers_check() {
        let key = PrivateKey::generate().unwrap();
        let id = ApplicationIdentity {
            application_uri: "urn:testhost:uatap".into(),
            hostname: "testhost".into(),
            common_name: "uatap@testhost".into(),
            valid_for: Duration::from_secs(365 * 86_400),
        };
        let cert = generate_application_certificate(&key, &id).unwrap();
        assert!(cert.matches(&key));
        assert_eq!(cert.key_bits(), 2048);
        let (_, x) = X509Certificate::from_der(cert.der()).unwrap();
        let san = x.subject_alternative_name().unwrap().unwrap().value;
        assert!(san
            .general_names
            .contains(&GeneralName::URI("urn:testhost:uatap")));
        assert!(san
            .general_names
            .contains(&GeneralName::DNSName("testhost")));
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(
            ku.digital_signature()
                && ku.non_repudiation()
                && ku.key_encipherment()
                && ku.data_encipherment()
                && ku.key_cert_sign()
        );
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && eku.server_auth);
        let days =
            (x.validity().not_after.timestamp() - x.validity().not_before.timestamp()) / 86_400;
        assert_eq!(days, 366);
        assert!(x.validity().is_valid());
        // Self-signed: the signature verifies with its own key.
        crate::asymmetric::rsa_verify(
            crate::policy::AsymmetricSignature::Pkcs1Sha256,
            &cert,
            x.tbs_certificate.as_ref(),
            &x.signature_value.data,
            0,
        )
        .unwrap();
        // The key written as PEM reads back as the same key.
        let pem = private_key_pem(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        assert!(cert.matches(&again));
    }
}
