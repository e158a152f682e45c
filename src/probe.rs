//! `uatap probe opc.tcp://host:port`: the endpoint doctor (see `uatap_proxy::probe`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use uatap_proxy::pki;
use uatap_proxy::probe::{probe, Password, ProbeConfig, UserLogin};
use uatap_proxy::upstream::Upstream;

/// The environment variable `--user` reads the password from.
const PASSWORD_ENV: &str = "UATAP_PASSWORD";

/// Options of `uatap probe`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server: opc.tcp://host:port/path or host:port.
    pub server: Upstream,
    /// JSON Lines of the events instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for each step, in seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub timeout: f64,
    /// Exit 0 when a security None endpoint is usable too (by default only a usable secured
    /// endpoint counts, as production Kepware/Ignition pairs use one).
    #[arg(long)]
    pub accept_none: bool,
    /// PKI folder of uatap's application certificate (own/cert.der, own/key.pem), made on
    /// first use [default: ~/.uatap/pki; %APPDATA%\uatap\pki on Windows].
    #[arg(long, value_name = "DIR", conflicts_with_all = ["cert", "key"])]
    pub pki: Option<PathBuf>,
    /// Use this application certificate (DER or PEM) instead of uatap's own; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM or DER, not password-protected).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Only open the secured channels; no CreateSession/ActivateSession over them.
    #[arg(long)]
    pub no_session: bool,
    /// Log the sessions in as this user (password from UATAP_PASSWORD, or asked for without
    /// echo) instead of anonymously.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

/// Runs the probe and prints each event as it comes.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let identity = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => pki::load(c, k)?,
        _ => {
            let dir = match &args.pki {
                Some(d) => d.clone(),
                None => pki::default_pki_dir()
                    .context("no home folder for uatap's certificate: give --pki DIR")?,
            };
            pki::load_or_create(&dir)?
        }
    };
    let user = match &args.user {
        None => None,
        Some(name) => Some(UserLogin {
            user: name.clone(),
            password: Password::new(read_password(name)?),
        }),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let config = ProbeConfig {
        upstream: args.server.clone(),
        timeout: Duration::from_secs_f64(args.timeout.clamp(0.1, 600.0)),
        identity: Some(identity),
        session: !args.no_session,
        user,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut line = String::new();
    let outcome = runtime.block_on(probe(&config, &mut |e| {
        if args.json {
            line.clear();
            e.write_json(&mut line);
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "{}", e.to_text());
        }
        let _ = out.flush();
    }));
    let usable = if args.accept_none {
        outcome.usable
    } else {
        outcome.usable_secure
    };
    Ok(if outcome.reachable && usable > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The password of `--user`: from the environment, or typed at a prompt that does not echo.
fn read_password(user: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("--user {user}: set {PASSWORD_ENV} (no terminal to ask for the password)");
    }
    if !set_echo(false) {
        bail!("--user {user}: cannot hide what is typed on this terminal; set {PASSWORD_ENV}");
    }
    eprint!("Password for {user}: ");
    let _ = std::io::stderr().flush();
    let mut p = String::new();
    let read = std::io::stdin().read_line(&mut p);
    set_echo(true);
    eprintln!();
    read.context("reading the password")?;
    Ok(p.trim_end_matches(['\r', '\n']).to_string())
}

/// Turns the terminal's echo off or on; false when it could not.
#[cfg(unix)]
fn set_echo(on: bool) -> bool {
    std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

/// Turns the terminal's echo off or on; false when it could not.
#[cfg(not(unix))]
fn set_echo(_on: bool) -> bool {
    // No portable way without a console API: refuse to read a visible password.
    false
}
