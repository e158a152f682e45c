//! CreateSession, ActivateSession (with the four identity tokens) and CloseSession
//! (OPC 10000-4 §5.7).

use std::fmt;

use bytes::BufMut;

use super::common::{RequestHeader, ResponseHeader, SignatureData};
use super::discovery::{ApplicationDescription, EndpointDescription};
use super::macros::ua_struct;
use crate::error::DecodeError;
use crate::ids::structure;
use crate::reader::Reader;
use crate::status::StatusCode;
use crate::types::{ByteString, Decode, DiagnosticInfo, ExtensionObject, NodeId, UaString};
use crate::Encode;

/// Secret bytes (passwords, token data): decoded and re-encoded like a ByteString, but never
/// shown by `Debug` or `Display`, so no log line can carry them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<'a>(pub ByteString<'a>);

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_bytes() {
            None => f.write_str("Secret(null)"),
            Some(b) => write!(f, "Secret({} bytes)", b.len()),
        }
    }
}

impl<'a> Decode<'a> for Secret<'a> {
    const MIN_ENCODED_LEN: usize = 4;
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        ByteString::decode(r).map(Secret)
    }
}

impl Encode for Secret<'_> {
    fn encoded_len(&self) -> usize {
        self.0.encoded_len()
    }
    fn encode<B: BufMut>(&self, out: &mut B) {
        self.0.encode(out)
    }
}

ua_struct! {
    /// A software certificate and its signature.
    pub struct SignedSoftwareCertificate<'a> {
        /// Certificate.
        certificate_data: one ByteString<'a>,
        /// Signature.
        signature: one ByteString<'a>,
    }
}

ua_struct! {
    /// Opens a session (§5.7.2).
    pub struct CreateSessionRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// The client application.
        client_description: one ApplicationDescription<'a>,
        /// Server URI expected.
        server_uri: one UaString<'a>,
        /// Endpoint URL the client used (servers check its host against their certificate).
        endpoint_url: one UaString<'a>,
        /// Human-readable session name.
        session_name: one UaString<'a>,
        /// Client nonce (secret).
        client_nonce: one Secret<'a>,
        /// Client application instance certificate.
        client_certificate: one ByteString<'a>,
        /// Requested timeout, ms.
        requested_session_timeout: one f64,
        /// Largest response the client accepts.
        max_response_message_size: one u32,
    }
}

ua_struct! {
    /// The new session's ids and the server's proof of identity (§5.7.2).
    pub struct CreateSessionResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Public session id.
        session_id: one NodeId<'a>,
        /// Secret token the client puts in every RequestHeader.
        authentication_token: one NodeId<'a>,
        /// Timeout granted, ms.
        revised_session_timeout: one f64,
        /// Server nonce (secret).
        server_nonce: one Secret<'a>,
        /// Server certificate.
        server_certificate: one ByteString<'a>,
        /// Endpoints (the client compares them with GetEndpoints).
        server_endpoints: array EndpointDescription<'a>,
        /// Software certificates.
        server_software_certificates: array SignedSoftwareCertificate<'a>,
        /// Server signature over client certificate + nonce.
        server_signature: one SignatureData<'a>,
        /// Largest request the server accepts.
        max_request_message_size: one u32,
    }
}

ua_struct! {
    /// Activates a session and sets its user, possibly on a new channel after a reconnect
    /// (§5.7.3).
    pub struct ActivateSessionRequest<'a> {
        /// Header (its AuthenticationToken names the session).
        request_header: one RequestHeader<'a>,
        /// Client signature over server certificate + nonce.
        client_signature: one SignatureData<'a>,
        /// Software certificates.
        client_software_certificates: array SignedSoftwareCertificate<'a>,
        /// Preferred locales.
        locale_ids: array UaString<'a>,
        /// The user identity token (see [`IdentityToken`]).
        user_identity_token: one ExtensionObject<'a>,
        /// Signature of an X509 user token.
        user_token_signature: one SignatureData<'a>,
    }
}

ua_struct! {
    /// Result of ActivateSession.
    pub struct ActivateSessionResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// New server nonce (secret).
        server_nonce: one Secret<'a>,
        /// Per software certificate.
        results: array StatusCode,
        /// Diagnostics.
        diagnostic_infos: array DiagnosticInfo<'a>,
    }
}

ua_struct! {
    /// Closes the session (§5.7.4).
    pub struct CloseSessionRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// Delete the session's subscriptions too.
        delete_subscriptions: one bool,
    }
}

ua_struct! {
    /// Answer to CloseSession.
    pub struct CloseSessionResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
    }
}

ua_struct! {
    /// Anonymous user.
    pub struct AnonymousIdentityToken<'a> {
        /// PolicyId of the endpoint's anonymous policy.
        policy_id: one UaString<'a>,
    }
}

ua_struct! {
    /// User name and password (the password possibly RSA-encrypted).
    pub struct UserNameIdentityToken<'a> {
        /// PolicyId.
        policy_id: one UaString<'a>,
        /// The user name (may be shown).
        user_name: one UaString<'a>,
        /// The password (never shown).
        password: one Secret<'a>,
        /// Encryption algorithm URI; null = plain text.
        encryption_algorithm: one UaString<'a>,
    }
}

ua_struct! {
    /// A user certificate.
    pub struct X509IdentityToken<'a> {
        /// PolicyId.
        policy_id: one UaString<'a>,
        /// The user's certificate DER.
        certificate_data: one ByteString<'a>,
    }
}

ua_struct! {
    /// A token issued by an identity provider.
    pub struct IssuedIdentityToken<'a> {
        /// PolicyId.
        policy_id: one UaString<'a>,
        /// The token (never shown).
        token_data: one Secret<'a>,
        /// Encryption algorithm URI.
        encryption_algorithm: one UaString<'a>,
    }
}

/// The user identity carried by ActivateSession, decoded from its ExtensionObject.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityToken<'a> {
    /// Null ExtensionObject: anonymous without a policy id.
    None,
    /// AnonymousIdentityToken.
    Anonymous(AnonymousIdentityToken<'a>),
    /// UserNameIdentityToken.
    UserName(UserNameIdentityToken<'a>),
    /// X509IdentityToken.
    X509(X509IdentityToken<'a>),
    /// IssuedIdentityToken.
    Issued(IssuedIdentityToken<'a>),
    /// A token type this codec does not know.
    Unknown,
}

impl IdentityToken<'_> {
    /// The `identity` value of the `session` event.
    pub fn kind(&self) -> &'static str {
        match self {
            IdentityToken::None | IdentityToken::Anonymous(_) => "anonymous",
            IdentityToken::UserName(_) => "username",
            IdentityToken::X509(_) => "x509",
            IdentityToken::Issued(_) => "issued",
            IdentityToken::Unknown => "unknown",
        }
    }
}

impl<'a> ActivateSessionRequest<'a> {
    /// Decodes the user identity token from its ExtensionObject.
    pub fn identity_token(&self) -> Result<IdentityToken<'_>, DecodeError> {
        let eo = &self.user_identity_token;
        let Some(id) = eo.type_id.as_ns0_numeric() else {
            return Ok(IdentityToken::Unknown);
        };
        let Some(body) = eo.binary_body() else {
            return Ok(if eo.type_id.is_null() {
                IdentityToken::None
            } else {
                IdentityToken::Unknown
            });
        };
        let mut r = Reader::new(body);
        Ok(match id {
            structure::ANONYMOUS_IDENTITY_TOKEN => {
                IdentityToken::Anonymous(AnonymousIdentityToken::decode(&mut r)?)
            }
            structure::USER_NAME_IDENTITY_TOKEN => {
                IdentityToken::UserName(UserNameIdentityToken::decode(&mut r)?)
            }
            structure::X509_IDENTITY_TOKEN => {
                IdentityToken::X509(X509IdentityToken::decode(&mut r)?)
            }
            structure::ISSUED_IDENTITY_TOKEN => {
                IdentityToken::Issued(IssuedIdentityToken::decode(&mut r)?)
            }
            0 => IdentityToken::None,
            _ => IdentityToken::Unknown,
        })
    }
}
