//! `uatap proxy`: sits inline between an OPC UA client and server, forwards every byte
//! unchanged, and tells live what is going on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::access::AccessArgs;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use uatap_analysis::Options;
use uatap_proxy::config::{self, ListenerEntry, ProxyConfig};
use uatap_proxy::fault::{self, FaultSpec, Faults};
use uatap_proxy::hub::{run_hub, EventSink, Recording};
use uatap_proxy::metrics::{self, Metrics, MetricsSink};
use uatap_proxy::relay::{run_listener, shutdown_signal, Ids, ListenerConfig};
use uatap_proxy::sink::{JsonSink, TextSink};
use uatap_proxy::upstream::Upstream;
use uatap_recorder::RotationConfig;

/// Options of `uatap proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to accept OPC UA clients on, e.g. 0.0.0.0:4841.
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub listen: Option<SocketAddr>,
    /// The server: host:port or opc.tcp://host:port/path.
    #[arg(
        long,
        value_name = "SERVER",
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub upstream: Option<Upstream>,
    /// Many listeners from a TOML file ([[listener]] tables with listen, upstream, optional
    /// name, connect_timeout, rewrite_endpoint_urls, mirror_refusal; top-level json_file,
    /// metrics, record), served by one process with one event stream. Instead of --listen/--upstream; options given on the command line
    /// win over the file's.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// JSON Lines of the events on standard output (the readable log then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// JSON Lines of the events to this file (the readable log stays on standard output).
    #[arg(long, value_name = "FILE")]
    pub json_file: Option<PathBuf>,
    /// Also log every OPC UA message (`message` events, in the readable log and in JSON).
    #[arg(short, long, visible_alias = "messages")]
    pub verbose: bool,
    /// How long to wait for the server to accept a connection, in seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub connect_timeout: f64,
    /// Report a peer that stalls for this many seconds: a chunk begun and still incomplete
    /// (`message_stalled`: a stuck sender, a slowloris), or a write toward a peer that does not
    /// read (`write_blocked`).
    #[arg(long, default_value_t = uatap_analysis::DEFAULT_STALL_AFTER.as_secs_f64(), value_name = "SECS")]
    pub stall_after: f64,
    #[command(flatten)]
    pub keys: crate::keys::KeyArgs,
    /// Record what crosses the proxy to this pcapng file (both legs, events as comments).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Start a new recording file when the current one reaches this many megabytes.
    #[arg(long, value_name = "MB")]
    pub record_max_size: Option<u64>,
    /// Keep at most this many recording files (the oldest are deleted), with --record-max-size.
    #[arg(long, value_name = "N")]
    pub record_files: Option<std::num::NonZeroUsize>,
    /// Record each byte's payload once, on the client's leg: the server's leg keeps its packets'
    /// headers, lengths and times, not the bytes (the same bytes, unless a fault withheld
    /// them). Half the disk, and the disk's bandwidth, of a full recording; Wireshark shows the
    /// server leg as "packet size limited during capture".
    #[arg(long)]
    pub record_payload_once: bool,
    /// Serve Prometheus metrics on GET http://ADDR/metrics (default 127.0.0.1:9464; a bare
    /// port means 127.0.0.1:PORT; port 0 picks one and prints it).
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = "127.0.0.1:9464",
        value_parser = metrics::parse_addr
    )]
    pub metrics: Option<SocketAddr>,
    /// Allow --metrics on an address other hosts can reach; it is then served over HTTPS and
    /// needs a bearer token (--http-token-file).
    #[arg(long)]
    pub metrics_allow_remote: bool,
    /// Allow --admin on an address other hosts can reach; it is then served over HTTPS and
    /// needs a bearer token (--http-token-file).
    #[arg(long)]
    pub admin_allow_remote: bool,
    #[command(flatten)]
    pub access: AccessArgs,
    /// Stop by itself after this many seconds (for demos and tests).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// CHANGES BYTES: rewrite the host:port of the endpoint URLs the server advertises
    /// (GetEndpoints, FindServers, CreateSession) to the address the client dialed, so that a
    /// client that dials the advertised URL (Ignition) stays on the proxy. Security None
    /// channels only; each rewrite is reported as a fault_injected event.
    #[arg(long)]
    pub rewrite_endpoint_urls: bool,
    /// Trusted man-in-the-middle for secured channels: uatap is the server toward the client
    /// and the client toward the server, with its own application certificate (made on first
    /// use in --pki), so the analysis sees every message of a SignAndEncrypt session. Both
    /// applications must trust uatap's certificate. CHANGES BYTES (certificates, signatures,
    /// encryption); every other message passes unchanged.
    #[arg(long)]
    pub mitm: bool,
    /// The folder of uatap's own certificate (own/cert.der, own/key.pem) for --mitm.
    #[arg(long, value_name = "DIR", default_value_os_t = default_pki())]
    pub pki: PathBuf,
    /// The server's certificate (DER or PEM), for --mitm when the client does not fetch the
    /// endpoints through uatap before it opens a secured channel.
    #[arg(long, value_name = "FILE")]
    pub upstream_cert: Option<PathBuf>,
    /// When the server refuses a connection, stop listening until it accepts again (checked
    /// every second), so that clients see the refusal (Bad_ConnectionRejected) themselves.
    #[arg(long)]
    pub mirror_refusal: bool,
    /// CHANGES BYTES: inject a fault, e.g. "cut at 10s", "reset after ActivateSessionResponse",
    /// "drop-message PublishResponse x3 after 5s", "blackhole s2c for 30s", "latency 200ms",
    /// "bandwidth 10kB/s", "refuse", "err Bad_TcpServerTooBusy",
    /// "reject next OPN with Bad_SecurityChecksFailed", "slow-close 2s". Repeatable; each one
    /// applied is reported as a fault_injected event. See the README for the language.
    #[arg(long = "fault", value_name = "SPEC", value_parser = parse_fault)]
    pub faults: Vec<FaultSpec>,
    /// Serve the admin API (list, add, remove faults; list connections) on
    /// http://ADDR (default 127.0.0.1:9465; a bare port means 127.0.0.1:PORT; loopback unless
    /// --admin-allow-remote).
    /// `uatap fault` talks to it.
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = "127.0.0.1:9465",
        value_parser = metrics::parse_addr
    )]
    pub admin: Option<SocketAddr>,
}

fn parse_fault(s: &str) -> Result<FaultSpec, String> {
    FaultSpec::parse(s)
}

/// What to serve, from the command line or a config file.
struct Plan {
    listeners: Vec<ListenerEntry>,
    json_file: Option<PathBuf>,
    metrics: Option<SocketAddr>,
    metrics_allow_remote: bool,
    record: Option<PathBuf>,
    record_max_size: Option<u64>,
    record_files: Option<std::num::NonZeroUsize>,
    record_payload_once: bool,
    admin: Option<SocketAddr>,
    admin_allow_remote: bool,
    access: AccessArgs,
}

impl Plan {
    fn new(args: &Args) -> anyhow::Result<Plan> {
        let file = match &args.config {
            Some(path) => config::load(path).map_err(anyhow::Error::msg)?,
            None => {
                let (Some(listen), Some(upstream)) = (args.listen, args.upstream.clone()) else {
                    anyhow::bail!("--listen and --upstream are needed (or --config FILE.toml)");
                };
                ProxyConfig {
                    listeners: vec![ListenerEntry {
                        name: None,
                        listen,
                        upstream,
                        connect_timeout: None,
                        rewrite_endpoint_urls: None,
                        mirror_refusal: None,
                        faults: Vec::new(),
                    }],
                    ..ProxyConfig::default()
                }
            }
        };
        let plan = Plan {
            listeners: file.listeners,
            json_file: args.json_file.clone().or(file.json_file),
            metrics: args.metrics.or(file.metrics),
            metrics_allow_remote: args.metrics_allow_remote || file.metrics_allow_remote,
            record: args.record.clone().or(file.record),
            record_max_size: args.record_max_size.or(file.record_max_size),
            record_files: args.record_files.or(file.record_files),
            record_payload_once: args.record_payload_once || file.record_payload_once,
            admin: args.admin.or(file.admin),
            admin_allow_remote: args.admin_allow_remote || file.admin_allow_remote,
            access: args
                .access
                .or(file.http_tls_cert, file.http_tls_key, file.http_token_file),
        };
        Ok(plan)
    }
}

/// Runs the proxy until Ctrl-C, SIGTERM or `--duration`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = relay_threads() {
        builder.worker_threads(n);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(args))
}

/// The runtime's threads, which run the relays: one fewer than the machine's cores (at least
/// one), so that the analysis thread, which takes every byte after the relays, is not
/// time-sliced against them. On two cores this measured 5% lower p99 with 100 ping-pong
/// connections and 6% more stream with recording. `TOKIO_WORKER_THREADS` still decides when set.
fn relay_threads() -> Option<usize> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    Some(cores.saturating_sub(1).max(1))
}

async fn serve(args: &Args) -> anyhow::Result<ExitCode> {
    // Caught from here on: a SIGTERM right after the banner stops the proxy cleanly (flushed).
    let stopping = shutdown_signal();
    let plan = Plan::new(args)?;
    let metrics_access = match plan.metrics {
        Some(addr) => Some(plan.access.access(
            "metrics",
            addr,
            plan.metrics_allow_remote,
            "--metrics-allow-remote",
            &args.pki,
        )?),
        None => None,
    };
    let admin_access = match plan.admin {
        Some(addr) => Some(plan.access.access(
            "the admin API",
            addr,
            plan.admin_allow_remote,
            "--admin-allow-remote",
            &args.pki,
        )?),
        None => None,
    };
    // Bounded by the bytes waiting (see uatap_proxy::hub::TapBytes), hardly by this count.
    let (tap, rx) = mpsc::channel(1 << 18);
    let faults =
        (!args.faults.is_empty() || plan.admin.is_some()).then(|| Faults::new(tap.clone()));
    if let Some(f) = &faults {
        if args.rewrite_endpoint_urls
            || plan
                .listeners
                .iter()
                .any(|l| l.rewrite_endpoint_urls == Some(true))
        {
            anyhow::bail!("--rewrite-endpoint-urls cannot be combined with --fault or --admin yet: use one or the other");
        }
        for spec in &args.faults {
            let id = f.add(spec.clone());
            eprintln!(
                "uatap: fault #{id} armed: {spec} (CHANGES BYTES: reported as fault_injected)"
            );
        }
    }
    let mut keys = args.keys.load_for(args.mitm)?;
    let mitm = if args.mitm {
        if args.rewrite_endpoint_urls {
            anyhow::bail!(
                "--mitm rewrites the endpoint URLs itself: leave out --rewrite-endpoint-urls"
            );
        }
        let timed_cut = |f: &FaultSpec| {
            matches!(f.action, fault::Action::Cut | fault::Action::Reset)
                && !matches!(f.start, fault::Start::After(_))
        };
        if let Some(bad) = args
            .faults
            .iter()
            .chain(plan.listeners.iter().flat_map(|l| l.faults.iter()))
            .find(|f| !timed_cut(f))
        {
            anyhow::bail!("with --mitm only timed cuts and resets apply yet (e.g. \"cut at 10s\"), not \"{bad}\"");
        }
        let identity = uatap_proxy::pki::load_or_create(&args.pki)
            .map_err(|e| anyhow::anyhow!("uatap's certificate in {}: {e}", args.pki.display()))?;
        let upstream_cert = match &args.upstream_cert {
            None => None,
            Some(p) => Some(
                uatap_crypto::Certificate::from_file_bytes(
                    &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
                )
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            ),
        };
        eprintln!(
            "uatap: MITM mode: secured channels end at uatap, which opens its own toward the server; certificates, signatures and encryption are re-done (CHANGES BYTES). uatap's certificate: {} (thumbprint {}): both the client and the server must trust it",
            identity.cert_path.display(),
            uatap_crypto::keys::hex(identity.cert.thumbprint()).to_uppercase()
        );
        Some((identity, upstream_cert))
    } else {
        None
    };
    let registry = Arc::new(uatap_crypto::passive::ClearRegistry::default());
    let default_timeout = Duration::from_secs_f64(args.connect_timeout.max(0.001));
    let stall_after = Duration::try_from_secs_f64(args.stall_after.max(0.001))
        .context("--stall-after: not a number of seconds")?;
    // Bind everything first: a busy port stops the proxy before it says it is proxying.
    let mut bound = Vec::with_capacity(plan.listeners.len());
    for l in &plan.listeners {
        let listener = TcpListener::bind(l.listen)
            .await
            .with_context(|| format!("cannot listen on {}", l.listen))?;
        let listen = listener.local_addr().unwrap_or(l.listen);
        let config = ListenerConfig {
            listen,
            upstream: l.upstream.clone(),
            connect_timeout: l.connect_timeout.unwrap_or(default_timeout),
            rewrite_endpoint_urls: l
                .rewrite_endpoint_urls
                .unwrap_or(args.rewrite_endpoint_urls),
            mirror_refusal: l.mirror_refusal.unwrap_or(args.mirror_refusal),
            stall_after,
            faults: faults.clone(),
            index: bound.len(),
            sum_for_recording: plan.record.is_some(),
            mitm: mitm.as_ref().map(|(identity, upstream_cert)| {
                Arc::new(uatap_proxy::mitm::MitmShared::new(
                    identity.clone(),
                    upstream_cert.clone(),
                    registry.clone(),
                    keys.key_log_writer(),
                ))
            }),
        };
        if let Some(f) = &faults {
            for spec in &l.faults {
                let spec = FaultSpec {
                    listener: Some(listen),
                    ..spec.clone()
                };
                let id = f.add(spec.clone());
                eprintln!("uatap: fault #{id} armed on {listen}: {spec} (CHANGES BYTES: reported as fault_injected)");
            }
        }
        bound.push((listener, config, l.name.clone()));
    }
    let metrics_listener = match plan.metrics {
        None => None,
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?,
        ),
    };
    let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
    let messages = args.verbose;
    if args.json {
        sinks.push(Box::new(JsonSink::new(
            std::io::BufWriter::new(std::io::stdout()),
            messages,
        )));
        sinks.push(Box::new(TextSink::stderr(messages)));
    } else {
        sinks.push(Box::new(TextSink::stdout(messages)));
    }
    if let Some(path) = &plan.json_file {
        let f = std::fs::File::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        sinks.push(Box::new(JsonSink::new(
            std::io::BufWriter::new(f),
            messages,
        )));
    }
    let metrics = metrics_listener.as_ref().map(|_| Arc::new(Metrics::new()));
    if let Some(m) = &metrics {
        sinks.push(Box::new(MetricsSink::new(m.clone())));
    }
    for (_, config, name) in &bound {
        let name = name
            .as_deref()
            .map(|n| format!("[{n}] "))
            .unwrap_or_default();
        let promise = if config.mitm.is_some() {
            "secured channels end at uatap (MITM: certificates, signatures and encryption re-done), None channels pass unchanged but for uatap's certificate and address in discovery answers"
        } else if config.rewrite_endpoint_urls {
            "endpoint URLs in discovery and CreateSession responses are rewritten, every other byte is forwarded unchanged"
        } else {
            "every byte is forwarded unchanged"
        };
        eprintln!(
            "uatap: {name}proxying opc.tcp://{} -> {}; {promise}",
            config.listen, config.upstream
        );
    }
    let options = Options {
        // Metrics count messages by service, so they need the message events.
        // `message` events only with -v/--messages (the contract); metrics count messages by
        // service, so they need them analysed, but the JSON sinks leave them out then.
        messages: args.verbose || metrics.is_some(),
        stall_after: Some(stall_after),
    };
    let recording = match &plan.record {
        None => None,
        Some(path) => {
            let rotation = RotationConfig {
                max_size_bytes: plan.record_max_size.map(|mb| mb.saturating_mul(1 << 20)),
                max_files: plan.record_files,
            };
            let descriptions: Vec<String> = bound
                .iter()
                .map(|(_, c, name)| {
                    let name = name
                        .as_deref()
                        .map(|n| format!("{n}: "))
                        .unwrap_or_default();
                    format!("uatap {name}{} -> {}", c.listen, c.upstream)
                })
                .collect();
            let r = Recording::create(path, rotation, &descriptions, plan.record_payload_once)
                .with_context(|| format!("cannot record to {}", path.display()))?;
            let ports: Vec<u16> = bound
                .iter()
                .flat_map(|(_, c, _)| [c.listen.port(), c.upstream.port])
                .collect();
            eprintln!(
                "uatap: recording to {}; {}",
                path.display(),
                open_hint(path, &ports)
            );
            Some(r)
        }
    };
    let (stop, stopped) = watch::channel(false);
    let metrics_server = match (metrics_listener, &metrics, metrics_access) {
        (Some(listener), Some(m), Some(access)) => {
            let addr = listener
                .local_addr()
                .with_context(|| "the metrics address")?;
            eprintln!("uatap: metrics on {}://{addr}/metrics", access.scheme());
            Some(tokio::spawn(metrics::serve(
                listener,
                m.clone(),
                access,
                stopped.clone(),
            )))
        }
        _ => None,
    };
    let admin_listener = match plan.admin {
        None => None,
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve the admin API on {addr}"))?,
        ),
    };
    let mut fault_tasks = Vec::new();
    if let Some(f) = &faults {
        fault_tasks.push(tokio::spawn(f.clone().run_scheduler()));
        if let (Some(listener), Some(access)) = (admin_listener, admin_access) {
            let addr = listener.local_addr().with_context(|| "the admin address")?;
            let scheme = access.scheme();
            eprintln!("uatap: admin API on {scheme}://{addr}/faults (uatap fault --admin {scheme}://{addr} list|add|remove|connections)");
            fault_tasks.push(tokio::spawn(fault::admin::serve(
                listener,
                f.clone(),
                access,
                stopped.clone(),
            )));
        }
    }
    if mitm.is_some() {
        keys = keys.with_registry(registry.clone());
    }
    let hub = std::thread::spawn(move || run_hub(rx, options, keys, sinks, recording));
    let ids = Arc::new(Ids::default());
    let mut servers = Vec::with_capacity(bound.len());
    for (listener, config, _) in bound {
        servers.push(tokio::spawn(run_listener(
            listener,
            config,
            tap.clone(),
            ids.clone(),
            stopped.clone(),
        )));
    }
    // Time for the analysis while no bytes come (a stalled chunk is reported then); the tick
    // holds no sender between ticks, so the hub still ends when the listeners have.
    let ticks = tokio::spawn(uatap_proxy::hub::tick(tap.downgrade()));
    // The listeners hold the only senders now: the hub ends when they have.
    drop(tap);
    let duration = args.duration.map(Duration::from_secs_f64);
    tokio::select! {
        _ = stopping => {}
        _ = async { match duration { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {}
    }
    let _ = stop.send(true);
    for s in servers {
        let _ = s.await;
    }
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    // The fault table holds a tap sender: it must go for the hub to end.
    for t in fault_tasks {
        t.abort();
        let _ = t.await;
    }
    drop(faults);
    ticks.abort();
    let _ = ticks.await;
    // Every tap sender is gone once the listeners and their connections ended.
    let _ = tokio::task::spawn_blocking(move || hub.join()).await;
    Ok(ExitCode::SUCCESS)
}

/// How to open the recording in Wireshark: its OPC UA dissector knows only port 4840.
fn open_hint(path: &std::path::Path, ports: &[u16]) -> String {
    let mut ports: Vec<u16> = ports.to_vec();
    ports.retain(|p| *p != 4840);
    ports.sort_unstable();
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
/// Where uatap keeps its own certificate by default (the probe's folder).
fn default_pki() -> PathBuf {
    uatap_proxy::pki::default_pki_dir().unwrap_or_else(|| PathBuf::from("uatap-pki"))
}
