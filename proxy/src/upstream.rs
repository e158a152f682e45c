//! Where the proxy dials: `host:port` or an `opc.tcp://host:port/path` URL, and what a failed
//! dial means for the person at the client.

use std::fmt;
use std::io;
use std::str::FromStr;

/// The server the proxy forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The URL as given, when it was one.
    pub url: Option<String>,
}

/// Why an upstream address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an upstream address: {input} (expected host:port or opc.tcp://host:port/path)")]
pub struct UpstreamParseError {
    /// What was given.
    pub input: String,
}

impl FromStr for Upstream {
    type Err = UpstreamParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UpstreamParseError {
            input: s.to_string(),
        };
        let (url, rest) = match s.strip_prefix("opc.tcp://") {
            Some(r) => (Some(s.to_string()), r),
            None => (None, s),
        };
        let authority = rest.split('/').next().unwrap_or("");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or_else(err)?;
            (h, p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(err());
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| err())?,
            // opc.tcp's default port.
            None if url.is_some() => 4840,
            None => return Err(err()),
        };
        Ok(Upstream {
            host: host.to_string(),
            port,
            url,
        })
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The `upstream_error.error` value for a failed connect or a lost connection.
pub fn classify_io_error(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => "reset",
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => "unreachable",
        _ => "unreachable",
    }
}

/// One sentence for the person at the client: what the client sees when the proxy cannot reach
/// the server. The kernel has already accepted the client, so it cannot see a refusal.
pub fn client_view(error: &str) -> &'static str {
    match error {
        "refused" => "the server refused the connection; the client's connection was accepted by uatap and then reset, so Ignition (Eclipse Milo) shows Bad_ConnectionClosed rather than Bad_ConnectionRejected (use --mirror-refusal to pass the refusal on)",
        "timeout" => "the server did not answer the connection attempt; the client's connection was reset, Ignition (Eclipse Milo) shows Bad_ConnectionClosed or Bad_Timeout",
        "dns" => "the server's host name does not resolve from the proxy; check DNS or the hosts file",
        "reset" => "the server reset the connection; the reset was passed on to the client",
        _ => "the server cannot be reached from the proxy (no route); the client's connection was reset",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_urls() {
        let u: Upstream = "kepware:49320".parse().expect("host:port");
        assert_eq!((u.host.as_str(), u.port, u.url), ("kepware", 49320, None));
        let u: Upstream = "opc.tcp://10.1.2.3:49320/Kepware".parse().expect("url");
        assert_eq!((u.host.as_str(), u.port), ("10.1.2.3", 49320));
        assert_eq!(u.url.as_deref(), Some("opc.tcp://10.1.2.3:49320/Kepware"));
        let u: Upstream = "opc.tcp://plc".parse().expect("default port");
        assert_eq!(u.port, 4840);
        let u: Upstream = "[::1]:4840".parse().expect("v6");
        assert_eq!(u.host, "::1");
        assert_eq!(u.to_string(), "[::1]:4840");
        assert!("kepware".parse::<Upstream>().is_err());
        assert!("opc.tcp://:4840".parse::<Upstream>().is_err());
        assert!("host:99999".parse::<Upstream>().is_err());
    }
}
