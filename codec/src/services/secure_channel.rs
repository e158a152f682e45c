//! OpenSecureChannel and CloseSecureChannel (OPC 10000-4 §5.6.2–5.6.3).

use super::common::{RequestHeader, ResponseHeader};
use super::macros::ua_struct;
use crate::types::{ByteString, DateTime};

/// SecurityTokenRequestType.Issue: a new channel.
pub const REQUEST_TYPE_ISSUE: i32 = 0;
/// SecurityTokenRequestType.Renew: a new token on an open channel.
pub const REQUEST_TYPE_RENEW: i32 = 1;

/// MessageSecurityMode (enum 302) as a name, e.g. `SignAndEncrypt`.
pub fn security_mode_name(mode: i32) -> &'static str {
    match mode {
        1 => "None",
        2 => "Sign",
        3 => "SignAndEncrypt",
        _ => "Invalid",
    }
}

ua_struct! {
    /// Asks for a new channel or token (§5.6.2.2).
    pub struct OpenSecureChannelRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// Protocol version of the client.
        client_protocol_version: one u32,
        /// Issue (0) or Renew (1).
        request_type: one i32,
        /// None (1), Sign (2), SignAndEncrypt (3).
        security_mode: one i32,
        /// Client's nonce for the key derivation (a secret: never logged).
        client_nonce: one ByteString<'a>,
        /// Requested token lifetime in ms.
        requested_lifetime: one u32,
    }
}

ua_struct! {
    /// The channel id, token id and lifetime a server grants (§5.6.2.2).
    pub struct ChannelSecurityToken {
        /// SecureChannelId.
        channel_id: one u32,
        /// TokenId.
        token_id: one u32,
        /// When the token was created (server clock).
        created_at: one DateTime,
        /// Lifetime granted, ms.
        revised_lifetime: one u32,
    }
}

ua_struct! {
    /// Grants a channel or token (§5.6.2.2).
    pub struct OpenSecureChannelResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Protocol version of the server.
        server_protocol_version: one u32,
        /// The token.
        security_token: one ChannelSecurityToken,
        /// Server's nonce (a secret: never logged).
        server_nonce: one ByteString<'a>,
    }
}

ua_struct! {
    /// Closes the channel (§5.6.3).
    pub struct CloseSecureChannelRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
    }
}

ua_struct! {
    /// Rarely sent: servers usually just close the socket.
    pub struct CloseSecureChannelResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
    }
}
