//! Who may use the admin API and the metrics endpoint: loopback by default; on an address other
//! hosts can reach only over TLS (rustls) and with a bearer token, because the admin API can
//! break a plant's connections and the metrics tell what crosses the proxy.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Shortest bearer token accepted: a short one could be guessed over the network.
pub const MIN_TOKEN_LEN: usize = 16;

/// What an HTTP endpoint of uatap talks over: plain TCP on loopback, TLS elsewhere.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why an endpoint cannot be served as asked.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A non-loopback address without the flag that allows it.
    #[error("refusing to serve {what} on {addr}: it is not a loopback address, so other hosts could reach it; bind it to 127.0.0.1:{port}, or pass {flag} (which then needs --http-token-file and serves HTTPS)", port = addr.port())]
    NotAllowed {
        /// The endpoint ("the admin API", "metrics").
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The flag that allows it.
        flag: &'static str,
    },
    /// A non-loopback address without a bearer token.
    #[error("{what} on {addr} is reachable by other hosts, so it needs a bearer token: give --http-token-file FILE (at least {MIN_TOKEN_LEN} characters) or set UATAP_HTTP_TOKEN")]
    NoToken {
        /// The endpoint.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The token is too short.
    #[error("the bearer token has {0} characters; at least {MIN_TOKEN_LEN} are needed")]
    ShortToken(usize),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key does not load.
    #[error("TLS: {0}")]
    Tls(String),
}

/// The TLS and token settings an endpoint is served with.
#[derive(Clone, Default)]
pub struct Access {
    tls: Option<tokio_rustls::TlsAcceptor>,
    token: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Access {
    // The token is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("tls", &self.tls.is_some())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Where the HTTPS certificate comes from and where the token is.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// PEM certificate chain for HTTPS; with `key`. Made in `generated_dir` when absent.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Where a self-signed certificate is made (and kept) when none is given.
    pub generated_dir: PathBuf,
    /// The bearer token (already read from its file or the environment).
    pub token: Option<String>,
}

impl Access {
    /// Plain HTTP with no token: loopback only.
    pub fn open() -> Access {
        Access::default()
    }

    /// Whether requests are served over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The URL scheme clients use.
    pub fn scheme(&self) -> &'static str {
        if self.is_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// Decides how `what` is served on `addr`: plain on loopback (TLS and token too when they
    /// were given), and off loopback only when `allow_remote` and a token is given, then over
    /// TLS with the given certificate or one made in `config.generated_dir`.
    pub fn for_addr(
        what: &'static str,
        addr: SocketAddr,
        allow_remote: bool,
        flag: &'static str,
        config: &AccessConfig,
    ) -> Result<Access, AccessError> {
        let remote = !addr.ip().is_loopback();
        if remote && !allow_remote {
            return Err(AccessError::NotAllowed { what, addr, flag });
        }
        let token = match &config.token {
            Some(t) if t.len() < MIN_TOKEN_LEN => return Err(AccessError::ShortToken(t.len())),
            Some(t) => Some(Arc::from(t.as_bytes())),
            None if remote => return Err(AccessError::NoToken { what, addr }),
            None => None,
        };
        let wants_tls = remote || config.cert.is_some();
        let tls = if wants_tls {
            Some(acceptor(config)?)
        } else {
            None
        };
        Ok(Access { tls, token })
    }

    /// Completes the TLS handshake when this endpoint is TLS; `None` when it fails.
    pub async fn accept(&self, s: TcpStream) -> Option<Box<dyn Io>> {
        match &self.tls {
            None => Some(Box::new(s)),
            Some(acceptor) => {
                let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(s))
                    .await
                    .ok()?
                    .ok()?;
                Some(Box::new(tls))
            }
        }
    }

    /// Whether a request head carries the token (`Authorization: Bearer TOKEN`), or no token
    /// is needed. Compared in constant time.
    pub fn authorized(&self, head: &[u8]) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let head = String::from_utf8_lossy(head);
        head.lines().skip(1).any(|line| {
            let Some((name, value)) = line.split_once(':') else {
                return false;
            };
            if !name.trim().eq_ignore_ascii_case("authorization") {
                return false;
            }
            let value = value.trim();
            let Some((scheme, given)) = value.split_once(' ') else {
                return false;
            };
            scheme.eq_ignore_ascii_case("bearer") && same(given.trim().as_bytes(), token)
        })
    }
}

/// Equality that takes as long whatever the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the bearer token from a file (first line, trimmed) or `UATAP_HTTP_TOKEN`.
pub fn read_token(file: Option<&Path>) -> Result<Option<String>, AccessError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| AccessError::File {
            path: path.to_path_buf(),
            source,
        })?;
        let t = text.lines().next().unwrap_or("").trim().to_string();
        return Ok(Some(t));
    }
    Ok(std::env::var("UATAP_HTTP_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// The paths of the certificate made when none is given.
pub fn generated_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("https-cert.pem"), dir.join("https-key.pem"))
}

fn acceptor(config: &AccessConfig) -> Result<tokio_rustls::TlsAcceptor, AccessError> {
    let (cert_path, key_path) = match (&config.cert, &config.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (Some(_), None) | (None, Some(_)) => {
            return Err(AccessError::Tls(
                "--http-tls-cert and --http-tls-key go together".into(),
            ))
        }
        (None, None) => make_certificate(&config.generated_dir)?,
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| AccessError::Tls(format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(AccessError::Tls(format!(
            "{}: no certificate",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| AccessError::Tls(format!("{}: {e}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AccessError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| AccessError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Makes (once) a self-signed certificate for this host in `dir`, and tells where it is.
fn make_certificate(dir: &Path) -> Result<(PathBuf, PathBuf), AccessError> {
    let (cert, key) = generated_paths(dir);
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let file_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AccessError::File { path, source }
    };
    std::fs::create_dir_all(dir).map_err(file_error(dir))?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Some(h) = hostname() {
        names.insert(0, h);
    }
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| AccessError::Tls(format!("cannot make a certificate: {e}")))?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes()).map_err(file_error(&key))?;
    std::fs::write(&cert, made.cert.pem()).map_err(file_error(&cert))?;
    eprintln!(
        "uatap: made a self-signed HTTPS certificate {} (give clients this file as their CA)",
        cert.display()
    );
    Ok((cert, key))
}

/// This machine's name, for the certificate made when none is given.
fn hostname() -> Option<String> {
    let from_env = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok());
    let name = match from_env {
        Some(n) => n,
        None => std::fs::read_to_string("/etc/hostname").ok()?,
    };
    let name = name.trim();
    (!name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    .then(|| name.to_string())
}

/// Writes a file only its owner may read (on Unix; Windows files inherit the folder's ACL).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(data)
}

/// Where a client of uatap's HTTP endpoints connects: `http://` or `https://` and an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Over TLS.
    pub tls: bool,
    /// The host name or IP as given (checked against the certificate).
    pub host: String,
    /// The address dialed.
    pub addr: SocketAddr,
}

impl Endpoint {
    /// Parses `https://HOST:PORT`, `http://HOST:PORT`, `IP:PORT` or a bare port (127.0.0.1).
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let s = s.trim().trim_end_matches('/');
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            (false, s)
        };
        if let Ok(addr) = crate::metrics::parse_addr(rest) {
            return Ok(Endpoint {
                tls,
                host: addr.ip().to_string(),
                addr,
            });
        }
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("not an address: {s:?} (e.g. https://proxy-host:9465)"))?;
        let port: u16 = port.parse().map_err(|_| format!("not a port in {s:?}"))?;
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} resolves to no address"))?;
        Ok(Endpoint {
            tls,
            host: host.to_string(),
            addr,
        })
    }
}

/// One HTTP/1.1 request to a uatap endpoint (blocking), over TLS trusting `ca` (PEM) when the
/// endpoint is `https`, with the bearer token when given; returns the whole answer.
pub fn request(
    endpoint: &Endpoint,
    ca: Option<&Path>,
    token: Option<&str>,
    request_head_and_body: impl Fn(&str) -> String,
) -> Result<String, String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(10);
    let tcp = std::net::TcpStream::connect_timeout(&endpoint.addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot reach {}: {e}", endpoint.addr))?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let text = request_head_and_body(&auth);
    let mut reply = Vec::new();
    if endpoint.tls {
        let mut roots = rustls::RootCertStore::empty();
        let ca = ca.ok_or("an https endpoint needs --cacert (the proxy's https-cert.pem)")?;
        for c in CertificateDer::pem_file_iter(ca)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", ca.display()))?
        {
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(endpoint.host.clone())
            .map_err(|e| format!("{}: {e}", endpoint.host))?;
        let conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(text.as_bytes())
            .map_err(|e| format!("TLS with {}: {e}", endpoint.addr))?;
        // A server that closes without close_notify still gave its whole answer (Connection:
        // close and Content-Length): keep what arrived.
        let _ = tls.take(1 << 20).read_to_end(&mut reply);
    } else {
        let mut tcp = tcp;
        tcp.write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", endpoint.addr))?;
        tcp.take(1 << 20)
            .read_to_end(&mut reply)
            .map_err(|e| format!("{}: {e}", endpoint.addr))?;
    }
    String::from_utf8(reply).map_err(|_| "the answer is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: Option<&str>) -> AccessConfig {
        AccessConfig {
            cert: None,
            key: None,
            generated_dir: std::env::temp_dir()
                .join(format!("uatap-access-{}", std::process::id())),
            token: token.map(str::to_string),
        }
    }

    #[test]
    fn loopback_is_open_and_remote_needs_the_flag_and_a_token() {
        let lo: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let a = Access::for_addr("metrics", lo, false, "--x", &config(None)).unwrap();
        assert!(!a.is_tls());
        assert!(a.authorized(b"GET /metrics HTTP/1.1\r\n\r\n"));
        let e = Access::for_addr("metrics", any, false, "--x", &config(None)).unwrap_err();
        assert!(e.to_string().contains("--x"), "{e}");
        let e = Access::for_addr("metrics", any, true, "--x", &config(None)).unwrap_err();
        assert!(matches!(e, AccessError::NoToken { .. }), "{e}");
        let e = Access::for_addr("metrics", any, true, "--x", &config(Some("short"))).unwrap_err();
        assert!(matches!(e, AccessError::ShortToken(5)), "{e}");
        let token = "0123456789abcdef-token";
        let a = Access::for_addr("metrics", any, true, "--x", &config(Some(token))).unwrap();
        assert!(a.is_tls());
        assert_eq!(a.scheme(), "https");
        assert!(!format!("{a:?}").contains(token));
        assert!(!a.authorized(b"GET /metrics HTTP/1.1\r\n\r\n"));
        assert!(!a.authorized(b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n"));
        assert!(!a.authorized(
            b"GET /metrics HTTP/1.1\r\nAuthorization: Basic 0123456789abcdef-token\r\n\r\n"
        ));
        // The token in the request line is not a header.
        assert!(!a.authorized(b"GET /0123456789abcdef-token HTTP/1.1\r\n\r\n"));
        assert!(a.authorized(
            b"GET /metrics HTTP/1.1\r\nauthorization:  bearer 0123456789abcdef-token \r\n\r\n"
        ));
        let _ = std::fs::remove_dir_all(config(None).generated_dir);
    }

    #[test]
    fn constant_time_equality() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
