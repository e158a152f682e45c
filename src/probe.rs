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
    /// Synthetic monitor: probe again at this interval (`30s`, `5m`, `1h`) until Ctrl-C.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_interval)]
    pub every: Option<Duration>,
    /// With --every: serve the results as Prometheus metrics on this address (loopback unless
    /// --metrics-allow-remote), e.g. 127.0.0.1:9466.
    #[arg(long, value_name = "ADDR", requires = "every")]
    pub metrics: Option<String>,
    /// Let --metrics bind to a non-loopback address; it is then served over HTTPS and needs a
    /// bearer token (--http-token-file).
    #[arg(long, requires = "metrics")]
    pub metrics_allow_remote: bool,
    #[command(flatten)]
    pub access: crate::access::AccessArgs,
}

/// `30s`, `5m`, `1h`, or plain seconds.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not an interval: {s} (e.g. 30s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s}: s, m or h")),
    };
    if !(0.1..=86_400.0 * 7.0).contains(&secs) {
        return Err(format!("{s}: between 0.1s and 7 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The monitor's results, served on `/metrics`.
#[derive(Debug, Default)]
struct MonitorPage {
    server: String,
    state: std::sync::Mutex<MonitorState>,
}

#[derive(Debug, Default)]
struct MonitorState {
    runs: u64,
    last: Option<uatap_proxy::probe::Outcome>,
    last_run_unix: f64,
    rejects: std::collections::BTreeMap<String, u64>,
}

impl uatap_proxy::metrics::Page for MonitorPage {
    fn render(&self) -> String {
        use std::fmt::Write as _;
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let server = uatap_proxy::metrics::escape_label(&self.server);
        let mut out = String::new();
        let last = st.last.clone().unwrap_or_default();
        let gauge = |out: &mut String, name: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{server=\"{server}\"}} {value}"
            );
        };
        gauge(
            &mut out,
            "uatap_probe_up",
            "1 when the last probe reached the server (TCP and Hello).",
            u8::from(last.reachable).to_string(),
        );
        gauge(
            &mut out,
            "uatap_probe_secure_endpoints_usable",
            "Secured endpoints the last probe could open (and log in on).",
            last.usable_secure.to_string(),
        );
        gauge(
            &mut out,
            "uatap_probe_endpoints_usable",
            "Endpoints of any security the last probe could use.",
            last.usable.to_string(),
        );
        gauge(
            &mut out,
            "uatap_probe_last_run_timestamp_seconds",
            "When the last probe ended (Unix time).",
            format!("{:.3}", st.last_run_unix),
        );
        let _ = writeln!(out, "# HELP uatap_probe_runs_total Probes run.\n# TYPE uatap_probe_runs_total counter\nuatap_probe_runs_total{{server=\"{server}\"}} {}", st.runs);
        let _ = writeln!(out, "# HELP uatap_probe_rejects_total Refusals seen by the probes, by cause.\n# TYPE uatap_probe_rejects_total counter");
        for (cause, n) in &st.rejects {
            let _ = writeln!(
                out,
                "uatap_probe_rejects_total{{server=\"{server}\",cause=\"{}\"}} {n}",
                uatap_proxy::metrics::escape_label(cause)
            );
        }
        out
    }
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
    if let Some(every) = args.every {
        return runtime.block_on(monitor(args, &config, every));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut line = String::new();
    let outcome = runtime.block_on(probe(&config, &mut |e| {
        print_event(&mut out, &mut line, &e, args.json)
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

/// Writes one event as text or a JSON line.
fn print_event(out: &mut impl Write, line: &mut String, e: &uatap_analysis::Event, json: bool) {
    if json {
        line.clear();
        e.write_json(line);
        let _ = writeln!(out, "{line}");
    } else {
        let _ = writeln!(out, "{}", e.to_text());
    }
    let _ = out.flush();
}

/// `--every`: probes at the interval until Ctrl-C, serving the results on `--metrics`.
async fn monitor(args: &Args, config: &ProbeConfig, every: Duration) -> anyhow::Result<ExitCode> {
    let page = std::sync::Arc::new(MonitorPage {
        server: args.server.to_string(),
        ..MonitorPage::default()
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = &args.metrics {
        let addr = uatap_proxy::metrics::parse_addr(addr).map_err(|e| anyhow::anyhow!(e))?;
        let access = args.access.access(
            "probe metrics",
            addr,
            args.metrics_allow_remote,
            "--metrics-allow-remote",
            &match &args.pki {
                Some(d) => d.clone(),
                None => pki::default_pki_dir()
                    .context("no home folder for uatap's HTTPS certificate: give --pki DIR")?,
            },
        )?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr().unwrap_or(addr);
        eprintln!(
            "uatap: probe metrics on {}://{bound}/metrics",
            access.scheme()
        );
        tokio::spawn(uatap_proxy::metrics::serve(
            listener,
            page.clone(),
            access,
            stop_rx,
        ));
    }
    eprintln!(
        "uatap: probing {} every {:?} until Ctrl-C",
        args.server, every
    );
    let mut line = String::new();
    loop {
        let mut rejects = Vec::new();
        let outcome = {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            probe(config, &mut |e| {
                if let uatap_analysis::EventKind::Reject(r) = &e.kind {
                    rejects.push(r.cause.to_string());
                }
                print_event(&mut out, &mut line, &e, args.json);
            })
            .await
        };
        {
            let mut st = page.state.lock().unwrap_or_else(|e| e.into_inner());
            st.runs = st.runs.saturating_add(1);
            st.last = Some(outcome);
            st.last_run_unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            for c in rejects {
                *st.rejects.entry(c).or_default() += 1;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = uatap_proxy::relay::shutdown_signal() => break,
        }
    }
    let _ = stop_tx.send(true);
    Ok(ExitCode::SUCCESS)
}

/// The password of `--user`: from the environment, or typed at a prompt that does not echo.
fn read_password(user: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("--user {user}: set {PASSWORD_ENV} (no terminal to ask for the password)");
    }
    if !uatap_proxy::os::set_echo(false) {
        bail!("--user {user}: cannot hide what is typed on this terminal; set {PASSWORD_ENV}");
    }
    eprint!("Password for {user}: ");
    let _ = std::io::stderr().flush();
    let mut p = String::new();
    let read = std::io::stdin().read_line(&mut p);
    uatap_proxy::os::set_echo(true);
    eprintln!();
    read.context("reading the password")?;
    Ok(p.trim_end_matches(['\r', '\n']).to_string())
}
