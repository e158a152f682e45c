//! `uatap proxy`: sits inline between an OPC UA client and server, forwards every byte
//! unchanged, and tells live what is going on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use uatap_analysis::Options;
use uatap_proxy::hub::{run_hub, EventSink, Recording};
use uatap_proxy::relay::{run_listener, shutdown_signal, Ids, ListenerConfig};
use uatap_proxy::sink::{JsonSink, TextSink};
use uatap_proxy::upstream::Upstream;
use uatap_recorder::RotationConfig;

/// Options of `uatap proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to accept OPC UA clients on, e.g. 0.0.0.0:4841.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The server: host:port or opc.tcp://host:port/path.
    #[arg(long, value_name = "SERVER")]
    pub upstream: Upstream,
    /// JSON Lines of the events on standard output (the readable log then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// JSON Lines of the events to this file (the readable log stays on standard output).
    #[arg(long, value_name = "FILE")]
    pub json_file: Option<PathBuf>,
    /// Also log every OPC UA message.
    #[arg(short, long)]
    pub verbose: bool,
    /// How long to wait for the server to accept a connection, in seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub connect_timeout: f64,
    /// Record what crosses the proxy to this pcapng file (both legs, events as comments).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Start a new recording file when the current one reaches this many megabytes.
    #[arg(long, value_name = "MB")]
    pub record_max_size: Option<u64>,
    /// Keep at most this many recording files (the oldest are deleted), with --record-max-size.
    #[arg(long, value_name = "N")]
    pub record_files: Option<std::num::NonZeroUsize>,
    /// Stop by itself after this many seconds (for demos and tests).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

/// Runs the proxy until Ctrl-C, SIGTERM or `--duration`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: &Args) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let listen = listener.local_addr().unwrap_or(args.listen);
    let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
    let messages = args.verbose;
    if args.json {
        sinks.push(Box::new(JsonSink::new(std::io::stdout())));
        sinks.push(Box::new(TextSink::stderr(messages)));
    } else {
        sinks.push(Box::new(TextSink::stdout(messages)));
    }
    if let Some(path) = &args.json_file {
        let f = std::fs::File::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        sinks.push(Box::new(JsonSink::new(std::io::BufWriter::new(f))));
    }
    eprintln!(
        "uatap: proxying opc.tcp://{listen} -> {}; every byte is forwarded unchanged",
        args.upstream
    );
    let (tap, rx) = mpsc::channel(8192);
    let options = Options {
        messages: args.verbose || args.json || args.json_file.is_some(),
    };
    let recording = match &args.record {
        None => None,
        Some(path) => {
            let rotation = RotationConfig {
                max_size_bytes: args.record_max_size.map(|mb| mb.saturating_mul(1 << 20)),
                max_files: args.record_files,
            };
            let description = format!("uatap {listen} -> {}", args.upstream);
            let r = Recording::create(path, rotation, &description)
                .with_context(|| format!("cannot record to {}", path.display()))?;
            eprintln!(
                "uatap: recording to {}; {}",
                path.display(),
                open_hint(path, listen.port(), args.upstream.port)
            );
            Some(r)
        }
    };
    let hub = std::thread::spawn(move || run_hub(rx, options, sinks, recording));
    let (stop, stopped) = watch::channel(false);
    let config = ListenerConfig {
        listen,
        upstream: args.upstream.clone(),
        connect_timeout: Duration::from_secs_f64(args.connect_timeout.max(0.001)),
    };
    let server = tokio::spawn(run_listener(
        listener,
        config,
        tap,
        Arc::new(Ids::default()),
        stopped,
    ));
    let duration = args.duration.map(Duration::from_secs_f64);
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = async { match duration { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {}
    }
    let _ = stop.send(true);
    let _ = server.await;
    // Every tap sender is gone once the listener and its connections ended.
    let _ = tokio::task::spawn_blocking(move || hub.join()).await;
    Ok(ExitCode::SUCCESS)
}

/// How to open the recording in Wireshark: its OPC UA dissector knows only port 4840.
fn open_hint(path: &std::path::Path, listen: u16, upstream: u16) -> String {
    let mut ports: Vec<u16> = vec![listen, upstream];
    ports.retain(|p| *p != 4840);
    ports.dedup();
    if ports.is_empty() {
        format!("open it with: tshark -r {}", path.display())
    } else {
        let opts: Vec<String> = ports
            .iter()
            .map(|p| format!("-d tcp.port=={p},opcua"))
            .collect();
        format!(
            "open it with: tshark -r {} {} (Wireshark: Decode As... OPC UA on those ports)",
            path.display(),
            opts.join(" ")
        )
    }
}
