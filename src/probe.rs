//! `uatap probe opc.tcp://host:port`: the endpoint doctor (see `uatap_proxy::probe`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use uatap_proxy::probe::{probe, ProbeConfig};
use uatap_proxy::upstream::Upstream;

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
}

/// Runs the probe and prints each event as it comes.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let config = ProbeConfig {
        upstream: args.server.clone(),
        timeout: Duration::from_secs_f64(args.timeout.clamp(0.1, 600.0)),
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
