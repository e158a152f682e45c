//! `uatap`: OPC UA protocol proxy, traffic recorder and replayer that tells why a connection
//! failed. One module per subcommand.

mod analyze;
mod check;
mod fault;
mod keys;
mod probe;
mod proxy;
mod redact;
mod replay;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// OPC UA troubleshooting: decode, judge, record and replay what crosses the wire.
#[derive(Debug, Parser)]
#[command(name = "uatap", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Analyse a capture (pcap or pcapng from tcpdump, Wireshark or uatap) and print its events.
    Analyze(analyze::Args),
    /// Gate CI on a capture: events that must or must not occur (EXPECT.toml) and/or a golden
    /// snapshot of the whole event stream. Exit 0 when all hold, 1 with a report when not.
    Check(check::Args),
    /// Sit inline between an OPC UA client and server, forward every byte unchanged, and say
    /// live what goes on (and why it fails).
    Proxy(Box<proxy::Args>),
    /// Add, list and remove the faults of a running proxy (`uatap proxy --admin`).
    Fault(fault::Args),
    /// The endpoint doctor: connect to a server step by step as a client and report each step
    /// and every endpoint it offers. Exit 0 when a secured endpoint is usable, 1 otherwise.
    Probe(probe::Args),
    /// Play a recording against live peers: the recorded server toward a live client, or the
    /// recorded client toward a live server, with the recorded faults at the recorded points.
    Replay(replay::Args),
    /// Write a copy of a recording with every user-token secret (passwords, nonces, session
    /// signatures) overwritten at the same length, to share it with a vendor.
    Redact(redact::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Analyze(args) => analyze::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Proxy(args) => proxy::run(&args),
        Command::Fault(args) => fault::run(&args),
        Command::Probe(args) => probe::run(&args),
        Command::Redact(args) => redact::run(&args),
        Command::Replay(args) => replay::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("uatap: {e:#}");
            ExitCode::from(2)
        }
    }
}
