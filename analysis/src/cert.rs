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
    fn garbage_is_summarised_not_rejected() {
        let s = summarize_certificate(&[0x30, 0x03, 0x01, 0x02, 0x03]);
        assert!(s.parse_error.is_some());
        assert_eq!(s.thumbprint_sha1.len(), 40);
        assert_eq!(sha1_hex(b"abc"), "A9993E364706816ABA3E25717850C26C9CD0D89D");
    }
}
