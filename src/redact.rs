//! `uatap redact IN OUT`: a copy of a recording that can be shared with a vendor. Recordings
//! keep the bytes as they crossed the wire, so a user name session over a None channel holds
//! the password; the copy has every user-token secret, nonce and session signature overwritten
//! with zeros at the same length, the TCP checksums of the changed segments fixed, and every
//! other byte (and the file's layout) unchanged, so it decodes the same.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use uatap_codec::secrets::stream_secrets;
use uatap_recorder::zero::zero_stream_spans;

/// Options of `uatap redact`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The recording (pcapng or pcap).
    pub input: PathBuf,
    /// Where to write the redacted copy.
    pub output: PathBuf,
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let data =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let (out, r) = zero_stream_spans(&data, stream_secrets)?;
    std::fs::write(&args.output, &out)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "uatap: {} secret(s) overwritten in {} packet(s); {} gap(s) of bytes missing from the capture; wrote {}",
        r.spans,
        r.packets,
        r.gaps,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
