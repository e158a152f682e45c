//! GetEndpoints and FindServers (OPC 10000-4 §5.5), with the descriptions they return.

use super::common::{RequestHeader, ResponseHeader};
use super::macros::ua_struct;
use crate::types::{ByteString, LocalizedText, UaString};

ua_struct! {
    /// Describes an application: URI, name, type, discovery URLs (§7.2).
    pub struct ApplicationDescription<'a> {
        /// ApplicationUri (must match the certificate's SAN URI).
        application_uri: one UaString<'a>,
        /// Product URI.
        product_uri: one UaString<'a>,
        /// Display name.
        application_name: one LocalizedText<'a>,
        /// Server (0), Client (1), ClientAndServer (2), DiscoveryServer (3).
        application_type: one i32,
        /// Gateway server URI.
        gateway_server_uri: one UaString<'a>,
        /// Discovery profile URI.
        discovery_profile_uri: one UaString<'a>,
        /// Where the application can be discovered.
        discovery_urls: array UaString<'a>,
    }
}

ua_struct! {
    /// How a user may authenticate on an endpoint (§7.42).
    pub struct UserTokenPolicy<'a> {
        /// PolicyId the identity token must name.
        policy_id: one UaString<'a>,
        /// Anonymous (0), UserName (1), Certificate (2), IssuedToken (3).
        token_type: one i32,
        /// Issued token type URI.
        issued_token_type: one UaString<'a>,
        /// Issuer endpoint.
        issuer_endpoint_url: one UaString<'a>,
        /// Policy used to encrypt the token.
        security_policy_uri: one UaString<'a>,
    }
}

ua_struct! {
    /// One endpoint a server offers: URL, certificate, policy, mode, user token policies (§7.14).
    pub struct EndpointDescription<'a> {
        /// URL the client will dial (the host the server advertises).
        endpoint_url: one UaString<'a>,
        /// The server.
        server: one ApplicationDescription<'a>,
        /// Server certificate DER.
        server_certificate: one ByteString<'a>,
        /// None (1), Sign (2), SignAndEncrypt (3).
        security_mode: one i32,
        /// SecurityPolicyUri.
        security_policy_uri: one UaString<'a>,
        /// Accepted user identity tokens.
        user_identity_tokens: array UserTokenPolicy<'a>,
        /// Transport profile URI.
        transport_profile_uri: one UaString<'a>,
        /// Relative security level.
        security_level: one u8,
    }
}

ua_struct! {
    /// Asks for the endpoints of a server (§5.5.4).
    pub struct GetEndpointsRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// The URL the client used.
        endpoint_url: one UaString<'a>,
        /// Preferred locales.
        locale_ids: array UaString<'a>,
        /// Transport profiles wanted.
        profile_uris: array UaString<'a>,
    }
}

ua_struct! {
    /// The endpoints a server offers.
    pub struct GetEndpointsResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Endpoints.
        endpoints: array EndpointDescription<'a>,
    }
}

ua_struct! {
    /// Asks a server or discovery server for the servers it knows (§5.5.2).
    pub struct FindServersRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// The URL the client used.
        endpoint_url: one UaString<'a>,
        /// Preferred locales.
        locale_ids: array UaString<'a>,
        /// Filter by server URI.
        server_uris: array UaString<'a>,
    }
}

ua_struct! {
    /// The servers found.
    pub struct FindServersResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Servers.
        servers: array ApplicationDescription<'a>,
    }
}
