//! Certificates summarised for a person: who, which one (SHA-1 thumbprint, as Kepware and
//! Ignition show it), valid when, for which application.

use serde::Serialize;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::time::Timestamp;

/// The `client_cert` / `server_cert` object of the `secure_channel` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// Subject DN, e.g. `CN=Ignition, O=Inductive Automation`.
    pub subject: Option<String>,
    /// SHA-1 of the leaf certificate's DER, upper-case hex (what UA thumbprints are).
    pub thumbprint_sha1: String,
    /// Start of validity, RFC 3339.
    pub not_before: Option<String>,
    /// End of validity, RFC 3339.
    pub not_after: Option<String>,
    /// The URI in the SubjectAltName: must equal the application's ApplicationUri.
    pub application_uri: Option<String>,
    /// Set when the bytes are not a parsable X.509 certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
}

/// The host names and IP addresses in a certificate's SubjectAltName: a client checks the host
/// of the endpoint URL against them (Bad_CertificateHostNameInvalid).
pub fn san_hosts(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut hosts = Vec::new();
    for e in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = e.parsed_extension() {
            for g in &san.general_names {
                match g {
                    GeneralName::DNSName(d) => hosts.push((*d).to_string()),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => {
                            if let Ok(b) = <[u8; 4]>::try_from(*ip) {
                                hosts.push(std::net::Ipv4Addr::from(b).to_string());
                            }
                        }
                        16 => {
                            if let Ok(b) = <[u8; 16]>::try_from(*ip) {
                                hosts.push(std::net::Ipv6Addr::from(b).to_string());
                            }
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
    }
    hosts
}

/// Summarises a DER certificate (a leaf possibly followed by its chain, as OPN carries it).
pub fn summarize_certificate(der: &[u8]) -> CertSummary {
    match X509Certificate::from_der(der) {
        Ok((rest, cert)) => {
            let leaf = der
                .get(..der.len().saturating_sub(rest.len()))
                .unwrap_or(der);
            let time = |t: x509_parser::time::ASN1Time| {
                Timestamp::from_unix_micros(t.timestamp().saturating_mul(1_000_000)).to_rfc3339()
            };
            let application_uri =
                cert.extensions()
                    .iter()
                    .find_map(|e| match e.parsed_extension() {
                        ParsedExtension::SubjectAlternativeName(san) => {
                            san.general_names.iter().find_map(|g| match g {
                                GeneralName::URI(u) => Some((*u).to_string()),
                                _ => None,
                            })
                        }
                        _ => None,
                    });
            CertSummary {
                subject: Some(cert.subject().to_string()),
                thumbprint_sha1: sha1_hex(leaf),
                not_before: Some(time(cert.validity().not_before)),
                not_after: Some(time(cert.validity().not_after)),
                application_uri,
                parse_error: None,
            }
        }
        Err(e) => CertSummary {
            subject: None,
            thumbprint_sha1: sha1_hex(der),
            not_before: None,
            not_after: None,
            application_uri: None,
            parse_error: Some(e.to_string()),
        },
    }
}

/// SHA-1 of `bytes` as upper-case hex.
pub fn sha1_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_certificate_is_summarised() {
        let mut params =
            rcgen::CertificateParams::new(vec!["gateway.plant.local".to_string()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Ignition OPC UA Client");
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("urn:gateway:ignition:client").expect("uri"),
        ));
        params.not_before = rcgen::date_time_ymd(2026, 1, 2);
        params.not_after = rcgen::date_time_ymd(2028, 3, 4);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let der = cert.der().to_vec();
        // OPN carries the leaf followed by its chain: only the leaf is summarised.
        let mut with_chain = der.clone();
        with_chain.extend_from_slice(&der);
        let s = summarize_certificate(&with_chain);
        assert_eq!(s.subject.as_deref(), Some("CN=Ignition OPC UA Client"));
        assert_eq!(
            s.application_uri.as_deref(),
            Some("urn:gateway:ignition:client")
        );
        assert_eq!(s.not_before.as_deref(), Some("2026-01-02T00:00:00.000000Z"));
        assert_eq!(s.not_after.as_deref(), Some("2028-03-04T00:00:00.000000Z"));
        assert_eq!(s.thumbprint_sha1, sha1_hex(&der));
        assert!(s.parse_error.is_none());
    }

    #[test]
    fn garbage_is_summarised_not_rejected() {
        let s = summarize_certificate(&[0x30, 0x03, 0x01, 0x02, 0x03]);
        assert!(s.parse_error.is_some());
        assert_eq!(s.thumbprint_sha1.len(), 40);
        assert_eq!(sha1_hex(b"abc"), "A9993E364706816ABA3E25717850C26C9CD0D89D");
    }
}
