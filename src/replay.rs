//! `uatap replay server|client REC.pcapng`: plays a recording against live peers (see
//! `uatap_replay` for what is matched and rewritten, `uatap_proxy::replay` for the sockets).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use uatap_analysis::{Event, Options};
use uatap_replay::client::{ClientOptions, ClientReplay};
use uatap_replay::server::{ServerOptions, ServerReplay};
use uatap_replay::{Recording, Speed};

/// Options of `uatap replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which side of the recording uatap plays.
    #[command(subcommand)]
    pub role: Role,
}

/// Which side of the recording uatap plays.
#[derive(Debug, clap::Subcommand)]
pub enum Role {
    /// Play the recorded server toward a live client: it answers with the recorded responses
    /// (live ids, handles and timestamps) and reproduces the recorded fault at the recorded
    /// point. A recording of several connections (a cut, then the reconnect) is played as
    /// successive connections.
    Server(ServerArgs),
    /// Play the recorded client toward a live server, with its faults (a recorded cut is a cut
    /// uatap makes, then the recorded reconnect), and diff the live responses against the
    /// recorded ones. Exit 0 when the replay ran to its end (1 with --strict and a diff).
    Client(ClientArgs),
}

/// What both roles share.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The recording (pcap or pcapng; a `uatap proxy --record` file holds both legs, the
    /// client's is played).
    pub recording: PathBuf,
    /// Only this connection: its number (1, 2, ...) or text of its id (`ip:port->ip:port`).
    #[arg(long, value_name = "ID")]
    pub conn: Option<String>,
    /// Pacing of the recorded pauses: 1 (as recorded), 10 (ten times faster), max (none).
    #[arg(long, default_value = "1")]
    pub speed: Speed,
    /// JSON Lines of the events instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also print one `message` event per OPC UA message.
    #[arg(long)]
    pub messages: bool,
}

/// Options of `uatap replay server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The recording and how to play it.
    #[command(flatten)]
    pub common: Common,
    /// Where live clients connect.
    #[arg(long, default_value = "127.0.0.1:4840")]
    pub listen: String,
    /// Keep the recorded timestamps instead of moving them to now.
    #[arg(long)]
    pub keep_time: bool,
    /// Stop when no client connects for this many seconds.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub accept_timeout: f64,
}

/// Options of `uatap replay client`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The recording and how to play it.
    #[command(flatten)]
    pub common: Common,
    /// The live server: opc.tcp://host:port/path or host:port.
    #[arg(long)]
    pub upstream: uatap_proxy::upstream::Upstream,
    /// Compare values too, not only status codes and structure.
    #[arg(long)]
    pub values: bool,
    /// Exit 1 when the diff is not empty.
    #[arg(long)]
    pub strict: bool,
}

/// Writes events as text or JSON Lines, flushed per line.
fn printer(json: bool) -> impl FnMut(Event) {
    let mut line = String::new();
    move |e: Event| {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if json {
            line.clear();
            e.write_json(&mut line);
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "{}", e.to_text());
        }
        let _ = out.flush();
    }
}

fn load(common: &Common) -> anyhow::Result<(Recording, Vec<uatap_replay::RecordedConnection>)> {
    let rec = Recording::load(&common.recording)
        .with_context(|| format!("cannot replay {}", common.recording.display()))?;
    for w in &rec.warnings {
        eprintln!("uatap: warning: {w}");
    }
    let conns = rec.select(common.conn.as_deref())?;
    Ok((rec, conns))
}

/// Runs the subcommand.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.role {
        Role::Server(a) => run_server(a),
        Role::Client(a) => run_client(a),
    }
}

fn run_server(args: &ServerArgs) -> anyhow::Result<ExitCode> {
    let (rec, conns) = load(&args.common)?;
    let n = conns.len();
    let mut replay = ServerReplay::new(
        conns,
        ServerOptions {
            speed: args.common.speed,
            keep_time: args.keep_time,
        },
    );
    replay.add_server_state(&rec.server_legs);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let options = Options {
        messages: args.common.messages,
        stall_after: None,
    };
    let mut sink = printer(args.common.json);
    let outcome = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "uatap: replaying the server of {} ({n} connection(s)) on opc.tcp://{addr}",
            args.common.recording.display()
        );
        let timeout = Duration::from_secs_f64(args.accept_timeout.clamp(0.1, 86_400.0));
        uatap_proxy::replay::serve(replay, listener, timeout, options, &mut sink)
            .await
            .context("replay failed")
    })?;
    eprintln!(
        "uatap: replay ended: {} connection(s) played, {} not (no client came)",
        outcome.played, outcome.not_played
    );
    Ok(ExitCode::SUCCESS)
}

fn run_client(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let (_rec, conns) = load(&args.common)?;
    let total = conns.len();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let options = Options {
        messages: args.common.messages,
        stall_after: None,
    };
    let replay = ClientReplay::new(
        conns,
        ClientOptions {
            speed: args.common.speed,
            values: args.values,
            endpoint_url: args.upstream.url.clone(),
        },
        uatap_proxy::hub::now(),
    );
    eprintln!(
        "uatap: replaying the client of {} ({total} connection(s)) toward {}:{}",
        args.common.recording.display(),
        args.upstream.host,
        args.upstream.port
    );
    let mut sink = printer(args.common.json);
    let outcome = runtime.block_on(uatap_proxy::replay::play_client(
        replay,
        total,
        &args.upstream,
        Duration::from_secs(10),
        options,
        &mut sink,
    ));
    // The diff: on stdout for a person, on stderr when stdout carries JSON Lines.
    let mut text = String::new();
    if outcome.diff.is_empty() {
        text.push_str("replay diff: none (every live response matched the recorded one)\n");
    } else {
        text.push_str(&format!(
            "replay diff: {} difference(s) between the live and the recorded responses\n",
            outcome.diff.len()
        ));
        for d in &outcome.diff {
            text.push_str(&format!("  {d}\n"));
        }
    }
    text.push_str(&format!(
        "replay: {} of {} recorded connection(s) played to their end\n",
        outcome.completed, outcome.total
    ));
    if args.common.json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if outcome.completed < outcome.total {
        eprintln!("uatap: the replay did not run to its end");
        return Ok(ExitCode::from(1));
    }
    if args.strict && !outcome.diff.is_empty() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
