//! `uatap proxy --config FILE.toml`: many listeners served by one proxy process (one analysis,
//! one event stream).
//!
//! ```toml
//! json_file = "/var/log/uatap/events.jsonl"   # optional
//! metrics = "127.0.0.1:9464"                  # optional
//! record = "/var/lib/uatap/all.pcapng"        # optional: one recording for every listener
//!
//! [[listener]]
//! name = "kepware-a"                          # optional, shown in the banner
//! listen = "0.0.0.0:4841"
//! upstream = "opc.tcp://kepware-a:49320"
//! connect_timeout = 5.0                       # optional, seconds
//! rewrite_endpoint_urls = false               # optional, else --rewrite-endpoint-urls
//! mirror_refusal = false                      # optional, else --mirror-refusal
//! faults = ["cut at 60s"]                     # optional: faults for this listener only
//!
//! [[listener]]
//! listen = "0.0.0.0:4842"
//! upstream = "kepware-b:49320"
//! ```
//!
//! Top-level keys: `json_file`, `metrics`, `metrics_allow_remote`, `record`, `record_max_size`
//! (MB), `record_files`, `record_payload_once`, `admin` (the fault admin API's address), `admin_allow_remote`,
//! `http_tls_cert`, `http_tls_key`, `http_token_file` (HTTPS and the bearer token of the admin
//! API and metrics off loopback). Relative paths are relative to the directory of the file. Unknown keys
//! are errors, so a typo does not silently drop a setting. A recording covers the whole proxy, with one interface per listener:
//! `record` inside a `[[listener]]` is refused with a pointer to the top-level key.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::fault::FaultSpec;
use crate::upstream::Upstream;

/// One `[[listener]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerEntry {
    /// Shown in the banner.
    pub name: Option<String>,
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where their connections go.
    pub upstream: Upstream,
    /// How long to wait for the server to accept; `None`: the command line's value.
    pub connect_timeout: Option<Duration>,
    /// `--rewrite-endpoint-urls` for this listener; `None`: the command line's value.
    pub rewrite_endpoint_urls: Option<bool>,
    /// `--mirror-refusal` for this listener; `None`: the command line's value.
    pub mirror_refusal: Option<bool>,
    /// Faults for this listener only (`faults = ["cut at 10s"]`), besides `--fault`'s.
    pub faults: Vec<FaultSpec>,
}

/// A whole config file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProxyConfig {
    /// At least one.
    pub listeners: Vec<ListenerEntry>,
    /// JSON Lines of the events to this file.
    pub json_file: Option<PathBuf>,
    /// Prometheus endpoint.
    pub metrics: Option<SocketAddr>,
    /// Allow a metrics address other hosts can reach.
    pub metrics_allow_remote: bool,
    /// One recording of every listener's connections.
    pub record: Option<PathBuf>,
    /// Rotate the recording at this many megabytes.
    pub record_max_size: Option<u64>,
    /// Keep at most this many recording files.
    pub record_files: Option<NonZeroUsize>,
    /// Record each byte's payload once, on the client's leg (`--record-payload-once`).
    pub record_payload_once: bool,
    /// The admin API's address.
    pub admin: Option<SocketAddr>,
    /// Allow an admin address other hosts can reach (then HTTPS with a token).
    pub admin_allow_remote: bool,
    /// PEM certificate for HTTPS of the admin API and metrics.
    pub http_tls_cert: Option<PathBuf>,
    /// PEM key of `http_tls_cert`.
    pub http_tls_key: Option<PathBuf>,
    /// File holding the bearer token of the admin API and metrics.
    pub http_token_file: Option<PathBuf>,
}

/// What is wrong with a config file, and where: always one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn at(text: &str, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        let message: String = message.into();
        // One line, whatever the parser wrote.
        let message = message
            .trim()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let (line, column) = match span {
            Some(s) => {
                let before = text.get(..s.start.min(text.len())).unwrap_or(text);
                let line = before.matches('\n').count().saturating_add(1);
                let start = before.rfind('\n').map_or(0, |i| i.saturating_add(1));
                let col = before
                    .get(start..)
                    .map_or(0, |l| l.chars().count())
                    .saturating_add(1);
                (Some(line), Some(col))
            }
            None => (None, None),
        };
        ConfigError {
            line,
            column,
            message,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    listener: Vec<RawListener>,
    json_file: Option<PathBuf>,
    metrics: Option<Spanned<String>>,
    #[serde(default)]
    metrics_allow_remote: bool,
    record: Option<PathBuf>,
    record_max_size: Option<u64>,
    record_files: Option<Spanned<usize>>,
    #[serde(default)]
    record_payload_once: bool,
    admin: Option<Spanned<String>>,
    #[serde(default)]
    admin_allow_remote: bool,
    http_tls_cert: Option<PathBuf>,
    http_tls_key: Option<PathBuf>,
    http_token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: Option<String>,
    listen: Spanned<String>,
    upstream: Spanned<String>,
    record: Option<Spanned<toml::Value>>,
    connect_timeout: Option<Spanned<f64>>,
    rewrite_endpoint_urls: Option<bool>,
    mirror_refusal: Option<bool>,
    #[serde(default)]
    faults: Vec<Spanned<String>>,
}

/// Parses a config file's text; relative paths are resolved against `base`.
pub fn parse(text: &str, base: &Path) -> Result<ProxyConfig, ConfigError> {
    let raw: RawFile =
        toml::from_str(text).map_err(|e| ConfigError::at(text, e.span(), e.message()))?;
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let mut cfg = ProxyConfig {
        json_file: raw.json_file.map(resolve),
        metrics_allow_remote: raw.metrics_allow_remote,
        record: raw.record.map(resolve),
        record_max_size: raw.record_max_size,
        record_payload_once: raw.record_payload_once,
        admin_allow_remote: raw.admin_allow_remote,
        http_tls_cert: raw.http_tls_cert.map(resolve),
        http_tls_key: raw.http_tls_key.map(resolve),
        http_token_file: raw.http_token_file.map(resolve),
        ..ProxyConfig::default()
    };
    if let Some(m) = raw.metrics {
        let addr = crate::metrics::parse_addr(m.get_ref())
            .map_err(|e| ConfigError::at(text, Some(m.span()), e))?;
        cfg.metrics = Some(addr);
    }
    if let Some(a) = raw.admin {
        let addr = crate::metrics::parse_addr(a.get_ref())
            .map_err(|e| ConfigError::at(text, Some(a.span()), e))?;
        cfg.admin = Some(addr);
    }
    if let Some(n) = raw.record_files {
        let files = NonZeroUsize::new(*n.get_ref()).ok_or_else(|| {
            ConfigError::at(text, Some(n.span()), "record_files must be at least 1")
        })?;
        cfg.record_files = Some(files);
    }
    if raw.listener.is_empty() {
        return Err(ConfigError::at(
            text,
            None,
            "no [[listener]] table: at least one listener (listen = \"ADDR\", upstream = \"SERVER\") is needed",
        ));
    }
    for l in raw.listener {
        if let Some(r) = &l.record {
            return Err(ConfigError::at(
                text,
                Some(r.span()),
                "`record` in a [[listener]] is not supported: one recording covers every listener (one interface each); put `record = \"FILE.pcapng\"` at the top level",
            ));
        }
        let listen = l
            .listen
            .get_ref()
            .trim()
            .parse::<SocketAddr>()
            .map_err(|_| {
                ConfigError::at(
                    text,
                    Some(l.listen.span()),
                    format!(
                        "listen: not an address: {:?} (expected IP:PORT, e.g. 0.0.0.0:4841)",
                        l.listen.get_ref()
                    ),
                )
            })?;
        let upstream = l
            .upstream
            .get_ref()
            .trim()
            .parse::<Upstream>()
            .map_err(|e| {
                ConfigError::at(text, Some(l.upstream.span()), format!("upstream: {e}"))
            })?;
        let connect_timeout = match l.connect_timeout {
            None => None,
            Some(t) => {
                let secs = *t.get_ref();
                if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
                    return Err(ConfigError::at(
                        text,
                        Some(t.span()),
                        format!("connect_timeout: {secs} is not a number of seconds in (0, 3600]"),
                    ));
                }
                Some(Duration::from_secs_f64(secs))
            }
        };
        // Port 0 (the system picks one) is never a clash.
        let clash = cfg
            .listeners
            .iter()
            .find(|o| o.listen == listen && listen.port() != 0);
        if let Some(other) = clash {
            let what = other.name.as_deref().unwrap_or("another listener");
            return Err(ConfigError::at(
                text,
                Some(l.listen.span()),
                format!("listen {listen} is already used by {what}"),
            ));
        }
        let mut faults = Vec::with_capacity(l.faults.len());
        for f in &l.faults {
            let spec = FaultSpec::parse(f.get_ref())
                .map_err(|e| ConfigError::at(text, Some(f.span()), format!("faults: {e}")))?;
            faults.push(spec);
        }
        cfg.listeners.push(ListenerEntry {
            name: l.name,
            listen,
            upstream,
            connect_timeout,
            rewrite_endpoint_urls: l.rewrite_endpoint_urls,
            mirror_refusal: l.mirror_refusal,
            faults,
        });
    }
    Ok(cfg)
}

/// Reads and parses a config file; the error is one line naming the file.
pub fn load(path: &Path) -> Result<ProxyConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<ProxyConfig, ConfigError> {
        parse(text, Path::new("/etc/uatap"))
    }

    #[test]
    fn parses_listeners_and_top_level() {
        let c = p(r#"
json_file = "events.jsonl"
metrics = "127.0.0.1:9464"
record = "/tmp/all.pcapng"
record_files = 3
record_payload_once = true

[[listener]]
name = "kepware-a"
listen = "0.0.0.0:4841"
upstream = "opc.tcp://kepware-a:49320"
connect_timeout = 2
mirror_refusal = true

[[listener]]
listen = "127.0.0.1:4842"
upstream = "kepware-b:49320"
faults = ["latency 100ms s2c", "cut after ActivateSessionResponse"]
"#)
        .unwrap();
        assert!(c.listeners[0].faults.is_empty());
        assert_eq!(c.listeners[1].faults.len(), 2);
        assert_eq!(
            c.listeners[1].faults[1].to_string(),
            "cut after ActivateSessionResponse"
        );
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.listeners[0].name.as_deref(), Some("kepware-a"));
        assert_eq!(c.listeners[0].upstream.port, 49320);
        assert_eq!(c.listeners[0].connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.listeners[1].connect_timeout, None);
        assert_eq!(c.listeners[0].mirror_refusal, Some(true));
        assert_eq!(c.listeners[1].mirror_refusal, None);
        assert_eq!(c.listeners[1].rewrite_endpoint_urls, None);
        assert_eq!(
            c.json_file.as_deref(),
            Some(Path::new("/etc/uatap/events.jsonl"))
        );
        assert_eq!(c.record.as_deref(), Some(Path::new("/tmp/all.pcapng")));
        assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.record_files.map(NonZeroUsize::get), Some(3));
        assert!(c.record_payload_once);
    }

    #[test]
    fn errors_are_one_line_with_position() {
        let e = p("[[listener]]\nlisten = \"0.0.0.0:4841\nupstream = \"x:1\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
        let e = p("[[listener]]\nlisten = \"0.0.0.0:4841\"\nupsteam = \"x:1\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("upsteam"), "{e}");
        let e = p("[[listener]]\nlisten = \"0.0.0.0\"\nupstream = \"x:1\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(10)), "{e}");
        let e = p("[[listener]]\nlisten = \"0.0.0.0:1\"\nupstream = \"x\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let e =
            p("[[listener]]\nlisten = \"0.0.0.0:1\"\nupstream = \"x:1\"\nrecord = \"a.pcapng\"\n")
                .unwrap_err();
        assert!(e.message.contains("top level"), "{e}");
        let e = p("metrics = \"127.0.0.1:9464\"\n").unwrap_err();
        assert!(e.message.contains("[[listener]]"), "{e}");
        let e = p("[[listener]]\nlisten = \"0.0.0.0:1\"\nupstream = \"x:1\"\n[[listener]]\nlisten = \"0.0.0.0:1\"\nupstream = \"y:1\"\n").unwrap_err();
        assert!(e.message.contains("already used"), "{e}");
        assert_eq!((e.line, e.column), (Some(5), Some(10)), "{e}");
        let e = p("[[listener]]\nlisten = \"0.0.0.0:1\"\nupstream = \"x:1\"\nfaults = [\"cut sometime\"]\n").unwrap_err();
        assert!(e.message.contains("faults: unexpected 'sometime'"), "{e}");
        assert_eq!(e.line, Some(4), "{e}");
        let two = "[[listener]]\nlisten = \"127.0.0.1:0\"\nupstream = \"x:1\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\nupstream = \"y:1\"\n";
        assert_eq!(p(two).unwrap().listeners.len(), 2);
    }
}
