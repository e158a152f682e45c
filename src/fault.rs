//! `uatap fault`: adds, lists and removes faults of a running proxy through its admin API
//! (`uatap proxy --admin`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use uatap_proxy::access::{read_token, request, Endpoint};

/// Options of `uatap fault`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The proxy's admin API (its `--admin`): `127.0.0.1:9465`, or `https://HOST:PORT` when
    /// it is served off loopback.
    #[arg(long, value_name = "URL", default_value = "127.0.0.1:9465", value_parser = Endpoint::parse)]
    pub admin: Endpoint,
    /// The CA (PEM) to check an https admin API's certificate with: the proxy's
    /// --http-tls-cert, or the https-cert.pem it made in its --pki.
    #[arg(long, value_name = "CERT.pem")]
    pub cacert: Option<PathBuf>,
    /// A file whose first line is the admin API's bearer token. Else UATAP_HTTP_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// What `uatap fault` does.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List the faults and their state (pending, active, done).
    List,
    /// Add a fault, e.g. `uatap fault add cut after PublishResponse seq=120`.
    Add {
        /// The fault, in the language of `--fault` (words may be given unquoted).
        #[arg(required = true, num_args = 1..)]
        spec: Vec<String>,
        /// Only this connection (see `uatap fault connections`).
        #[arg(long, value_name = "ID")]
        conn: Option<u64>,
    },
    /// Remove a fault by its id.
    Remove {
        /// The fault's id (see `uatap fault list`).
        id: u64,
    },
    /// List the open connections.
    Connections,
}

/// Calls the admin API and prints its JSON answer.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let (method, path, body) = match &args.action {
        Action::List => ("GET", "/faults".to_string(), String::new()),
        Action::Connections => ("GET", "/connections".to_string(), String::new()),
        Action::Remove { id } => ("DELETE", format!("/faults/{id}"), String::new()),
        Action::Add { spec, conn } => {
            let mut v = serde_json::json!({ "spec": spec.join(" ") });
            if let Some(c) = conn {
                v["conn"] = serde_json::json!(c);
            }
            ("POST", "/faults".to_string(), v.to_string())
        }
    };
    let token = read_token(args.http_token_file.as_deref())?;
    let (status, answer) = call(args, token.as_deref(), method, &path, &body)?;
    println!("{answer}");
    if (200..300).contains(&status) {
        Ok(ExitCode::SUCCESS)
    } else {
        let why = serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or(answer);
        anyhow::bail!("the proxy answered {status}: {why}")
    }
}

/// One HTTP/1.1 request; returns the status code and the body.
fn call(
    args: &Args,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let host = &args.admin.addr;
    let reply = request(&args.admin, args.cacert.as_deref(), token, |auth| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    })
    .map_err(anyhow::Error::msg)
    .with_context(|| {
        format!("cannot use the admin API on {host} (is `uatap proxy --admin {host}` running?)")
    })?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .context("the admin API's answer has no body")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("the admin API's answer has no status")?;
    Ok((status, body.to_string()))
}
