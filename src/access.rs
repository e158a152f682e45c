//! The HTTPS and bearer-token options of uatap's own HTTP endpoints (the admin API and the
//! metrics), shared by `uatap proxy` and `uatap probe --every`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use uatap_proxy::access::{read_token, Access, AccessConfig};

/// How the admin API and metrics are served when other hosts may reach them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AccessArgs {
    /// PEM certificate chain for HTTPS on the admin API and metrics (with --http-tls-key).
    /// Off loopback HTTPS is required; without this, a self-signed certificate is made in
    /// --pki (https-cert.pem) and kept.
    #[arg(long, value_name = "CERT.pem", requires = "http_tls_key")]
    pub http_tls_cert: Option<PathBuf>,
    /// The PEM private key of --http-tls-cert.
    #[arg(long, value_name = "KEY.pem", requires = "http_tls_cert")]
    pub http_tls_key: Option<PathBuf>,
    /// A file whose first line is the bearer token (at least 16 characters) that requests to
    /// the admin API and metrics must carry (`Authorization: Bearer TOKEN`); required off
    /// loopback. Else UATAP_HTTP_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,
}

impl AccessArgs {
    /// These options with a config file's under them (the command line wins).
    pub fn or(&self, cert: Option<PathBuf>, key: Option<PathBuf>, token: Option<PathBuf>) -> Self {
        AccessArgs {
            http_tls_cert: self.http_tls_cert.clone().or(cert),
            http_tls_key: self.http_tls_key.clone().or(key),
            http_token_file: self.http_token_file.clone().or(token),
        }
    }

    /// How `what` is served on `addr`; `pki`: where a certificate is made when none is given.
    pub fn access(
        &self,
        what: &'static str,
        addr: SocketAddr,
        allow_remote: bool,
        flag: &'static str,
        pki: &Path,
    ) -> anyhow::Result<Access> {
        let config = AccessConfig {
            cert: self.http_tls_cert.clone(),
            key: self.http_tls_key.clone(),
            generated_dir: pki.to_path_buf(),
            token: read_token(self.http_token_file.as_deref())?,
        };
        Ok(Access::for_addr(what, addr, allow_remote, flag, &config)?)
    }
}
