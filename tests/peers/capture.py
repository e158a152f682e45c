#!/usr/bin/env python3
"""Capture live OPC UA traffic between two real peers with tshark (loopback only).

    capture.py --server {asyncua|node} --client {asyncua|node} --mode {basic|big}
               --port N --out FILE.pcapng [--seconds S] [--items K] [--period MS]
               [--max-notif M] [--security POLICY:MODE] [--pki DIR] [--log FILE] [--verbose]
               [--host ADDR] [--also KIND:FILE ...]

Steps: start `tshark -i lo -f "tcp port N" -w FILE` and wait for "Capturing on 'Loopback",
start the server (ua_server.py / ua_server.js) and wait for its READY line, run the client
(ua_client.py / ua_client.js) to completion, let the FIN packets through, stop the server,
stop tshark with SIGINT, check that FILE is non-empty. Prints one summary line on stdout:

    OK server=node client=asyncua mode=basic security=None:None port=48401 packets=126 bytes=25072 client_s=3.4 total_s=6.8 out=FILE

and exits 0; on any failure prints "FAIL ..." plus the tail of the peers' log on stderr and exits 1.
The peers' console output goes to --log (default: FILE with the suffix .log).

--security POLICY:MODE (e.g. Basic256Sha256:Sign, Basic256Sha256:SignAndEncrypt,
Aes256_Sha256_RsaPss:Sign; default None:None) and --pki DIR (default: the peers' own default,
<repo>/.cache/pki) are passed to both peers. With a secured policy the server announces its
certificate on a "CERT <path>" line and the client gets it as --server-cert, so the client needs
no discovery connection and the capture holds one TCP connection.

--host ADDR (default 127.0.0.1) is the server's listen address and the host of the URL the client
connects to; an IPv6 address gets brackets in the URL: --host ::1 gives opc.tcp://[::1]:N/UA/Test.
The server is the only peer given --host (the client takes the URL).

--also KIND:FILE (repeatable) records the same traffic a second (third ...) time, with capturers
running at once with the main one, so every file holds the same session in another shape:
    pcap:FILE      tshark -i lo -F pcap (classic libpcap, microsecond timestamps)
    any:FILE       tshark -i any (Linux cooked capture v1, LINUX_SLL, in pcapng)
    any2:FILE      tshark -i any -y LINUX_SLL2 (Linux cooked capture v2, in pcapng)
    tcpdump:FILE   tcpdump -i lo -w FILE (classic libpcap, Ethernet link type)
All use the same capture filter "tcp port N". The summary line then ends with one
also=KIND:PACKETS:FILE word per extra capture.

--port 0 picks a free port. Big mode defaults to the fixture's settings: --items 2000 and, for
the node-opcua server, --max-notif 100000 (so a PublishResponse can exceed one chunk).

Environment: UATAP_VENV (python venv with asyncua; default <repo>/.venv), UATAP_NODE (node
binary; default `node`), UATAP_TSHARK (default `tshark`), UATAP_TCPDUMP (default `tcpdump`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent
REPO_ROOT = PEERS_DIR.parent.parent

TSHARK_READY_TIMEOUT = 20.0
SERVER_READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class CaptureError(Exception):
    pass


class Proc:
    """A child process whose stdout+stderr lines are collected with a prefix."""

    def __init__(self, name: str, argv: list[str], logbuf: list[str], lock: threading.Lock, echo: bool,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.lines: list[str] = []
        self._logbuf = logbuf
        self._lock = lock
        self._echo = echo
        self._cond = threading.Condition(lock)
        self._append(f"$ {' '.join(argv)}")
        try:
            self.p = subprocess.Popen(
                argv,
                cwd=PEERS_DIR,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # signals to capture.py's group don't reach it twice
            )
        except OSError as exc:
            raise CaptureError(f"{name}: cannot start {argv[0]}: {exc}") from exc
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _append(self, line: str) -> None:
        with self._cond:
            self.lines.append(line)
            self._logbuf.append(f"[{self.name}] {line}")
            if self._echo:
                print(f"[{self.name}] {line}", file=sys.stderr, flush=True)
            self._cond.notify_all()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for raw in self.p.stdout:
            self._append(raw.decode("utf-8", "replace").rstrip("\n"))
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, predicate, timeout: float) -> str | None:
        """Return the first line matching predicate, or None on timeout / process exit."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cond.wait(min(left, 0.1))

    def finish_reading(self) -> None:
        self._reader.join(timeout=2.0)

    def stop(self, sig: int, timeout: float) -> int | None:
        """Send sig, wait up to timeout, then SIGKILL the process group. Returns the exit code."""
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self._append(f"did not stop within {timeout:.0f}s after {signal.Signals(sig).name}; killing")
                self.kill()
        self.finish_reading()
        return self.p.returncode

    def kill(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                pass


def family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(family(host), socket.SOCK_STREAM) as s:
        return s.connect_ex((host, port)) == 0


ALSO_KINDS = ("pcap", "any", "any2", "tcpdump")


def parse_also(text: str) -> tuple[str, Path]:
    """"KIND:FILE" -> (kind, path)."""
    kind, sep, file = text.partition(":")
    if not sep or kind not in ALSO_KINDS or not file:
        raise argparse.ArgumentTypeError(f"bad --also {text!r}: KIND:FILE with KIND in {', '.join(ALSO_KINDS)}")
    return kind, Path(file)


def capturer_argv(kind: str, port: int, out: Path, tshark: str, tcpdump: str) -> list[str]:
    """The command line of one capturer; all of them see the same packets."""
    filt = f"tcp port {port}"
    if kind == "main":
        return [tshark, "-i", "lo", "-f", filt, "-w", str(out)]
    if kind == "pcap":
        return [tshark, "-i", "lo", "-f", filt, "-F", "pcap", "-w", str(out)]
    if kind == "any":
        return [tshark, "-i", "any", "-y", "LINUX_SLL", "-f", filt, "-w", str(out)]
    if kind == "any2":
        return [tshark, "-i", "any", "-y", "LINUX_SLL2", "-f", filt, "-w", str(out)]
    # -Z root: as root tcpdump would drop to the tcpdump user, who may not write to out's folder.
    return [tcpdump, "-i", "lo", "-n", "-Z", "root", "-w", str(out), filt]


def capturer_ready(line: str) -> bool:
    return "Capturing on" in line or "listening on" in line


def packets_captured(lines: list[str]) -> str:
    """N of the "N packets captured" line tshark and tcpdump print when stopped; "?" if none."""
    packets = "?"
    for line in lines:
        words = line.split()
        if len(words) >= 3 and words[1] in ("packets", "packet") and words[2] == "captured":
            packets = words[0]
    return packets


def peer_argv(stack: str, role: str, python: str, node: str) -> list[str]:
    if stack == "asyncua":
        return [python, "-u", str(PEERS_DIR / f"ua_{role}.py")]
    return [node, str(PEERS_DIR / f"ua_{role}.js")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=["asyncua", "node"], required=True)
    p.add_argument("--client", choices=["asyncua", "node"], required=True)
    p.add_argument("--mode", choices=["basic", "big"], default="basic")
    p.add_argument("--port", type=int, required=True, help="TCP port on --host (0: pick a free one)")
    p.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1; IPv6 e.g. ::1)")
    p.add_argument("--also", type=parse_also, action="append", default=[], metavar="KIND:FILE",
                   help="one more capture of the same traffic, KIND pcap, any, any2 or tcpdump (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="pcapng file to write")
    p.add_argument("--seconds", type=float, help="client run time (client default: basic 3, big 4)")
    p.add_argument("--items", type=int, help="number of Item.N variables (big mode default 2000)")
    p.add_argument("--period", type=int, help="server update period in ms (server default 100)")
    p.add_argument("--max-notif", type=int, help="node-opcua server cap per PublishResponse "
                   "(big mode default 100000, else node-opcua's 1000)")
    p.add_argument("--security", default="None:None", metavar="POLICY:MODE",
                   help="security policy and mode of the server's endpoint and of the client "
                   "(default None:None), e.g. Basic256Sha256:SignAndEncrypt")
    p.add_argument("--pki", type=Path, help="PKI folder for both peers (default: theirs, <repo>/.cache/pki)")
    p.add_argument("--log", type=Path, help="peers' console output (default: OUT with suffix .log)")
    p.add_argument("--verbose", "-v", action="store_true", help="echo the peers' output on stderr")
    return p.parse_args(argv)


def run(args: argparse.Namespace, logbuf: list[str]) -> str:
    """Do the capture; the peers' output is appended to logbuf. Returns the summary line."""
    t_start = time.monotonic()
    venv = Path(os.environ.get("UATAP_VENV") or REPO_ROOT / ".venv")
    python = str(venv / "bin" / "python")
    node = os.environ.get("UATAP_NODE") or shutil.which("node") or "node"
    tshark = os.environ.get("UATAP_TSHARK") or shutil.which("tshark") or "tshark"
    tcpdump = os.environ.get("UATAP_TCPDUMP") or shutil.which("tcpdump") or "tcpdump"
    if not Path(python).exists():
        raise CaptureError(f"no python in venv {venv} (run `make deps`)")
    if args.server == "node" or args.client == "node":
        if not (PEERS_DIR / "node_modules" / "node-opcua").is_dir():
            raise CaptureError(f"node-opcua is not installed in {PEERS_DIR}/node_modules (run `make deps`)")

    host = args.host
    port = args.port = args.port or free_port(host)
    if port_in_use(port, host):
        raise CaptureError(f"port {port} is already in use on {host}")
    url_host = f"[{host}]" if ":" in host else host
    url = f"opc.tcp://{url_host}:{port}/UA/Test"
    items = args.items if args.items is not None else (2000 if args.mode == "big" else 0)
    max_notif = args.max_notif
    if max_notif is None and args.mode == "big":
        max_notif = 100000

    out = args.out.resolve()
    captures = [("main", out)] + [(kind, f.resolve()) for kind, f in args.also]
    if len({f for _, f in captures}) != len(captures):
        raise CaptureError("--out and every --also need different files")
    for _, f in captures:
        f.parent.mkdir(parents=True, exist_ok=True)
        if f.exists():
            f.unlink()
    lock = threading.Lock()
    procs: list[Proc] = []
    env = dict(os.environ, PYTHONUNBUFFERED="1", NODE_NO_WARNINGS="1")
    try:
        # 1. tshark (and the --also capturers, all at once)
        capturers: list[tuple[str, Path, Proc]] = []
        for kind, f in captures:
            name = "tshark" if kind == "main" else f"capture-{kind}"
            cap = Proc(name, capturer_argv(kind, port, f, tshark, tcpdump), logbuf, lock, args.verbose, env)
            procs.append(cap)
            capturers.append((kind, f, cap))
        tsh = capturers[0][2]
        for kind, _, cap in capturers:
            if cap.wait_for_line(capturer_ready, TSHARK_READY_TIMEOUT) is None:
                if cap.p.poll() is not None:
                    raise CaptureError(f"{cap.name} exited with code {cap.p.returncode} before capturing")
                raise CaptureError(f"{cap.name} did not start capturing within {TSHARK_READY_TIMEOUT:.0f}s")
        time.sleep(0.5)  # settle: the capture filter is in place before the first SYN

        # 2. server
        sargv = peer_argv(args.server, "server", python, node) + ["--port", str(port)]
        if host != "127.0.0.1":
            sargv += ["--host", host]
        if items:
            sargv += ["--items", str(items)]
        if args.period:
            sargv += ["--period", str(args.period)]
        if max_notif is not None and args.server == "node":
            sargv += ["--max-notif", str(max_notif)]
        secured = args.security != "None:None"
        pki = ["--pki", str(args.pki.resolve())] if args.pki else []
        if secured:
            sargv += ["--security", args.security] + pki
        srv = Proc("server", sargv, logbuf, lock, args.verbose, env)
        procs.append(srv)
        ready = srv.wait_for_line(lambda l: l.startswith("READY "), SERVER_READY_TIMEOUT)
        if ready is None:
            if srv.p.poll() is not None:
                raise CaptureError(f"server exited with code {srv.p.returncode} before READY")
            raise CaptureError(f"server did not print READY within {SERVER_READY_TIMEOUT:.0f}s")
        if ready.split()[1] != url:
            raise CaptureError(f"server is READY on {ready.split()[1]}, expected {url}")
        server_cert = None
        if secured:
            cert_line = next((l for l in srv.lines if l.startswith("CERT ")), None)
            if cert_line is None:
                raise CaptureError("secured server printed no CERT line before READY")
            server_cert = cert_line.split(None, 1)[1]

        # 3. client, to completion
        cargv = peer_argv(args.client, "client", python, node) + [args.mode, url]
        if args.mode == "big":
            cargv += ["--items", str(items)]
        if args.seconds is not None:
            cargv += ["--seconds", f"{args.seconds:g}"]
        if secured:
            cargv += ["--security", args.security, "--server-cert", server_cert] + pki
        client_timeout = (args.seconds or 4.0) + 60.0
        t_client = time.monotonic()
        cli = Proc("client", cargv, logbuf, lock, args.verbose, env)
        procs.append(cli)
        try:
            client_rc = cli.p.wait(client_timeout)
        except subprocess.TimeoutExpired:
            cli.kill()
            raise CaptureError(f"client did not finish within {client_timeout:.0f}s") from None
        client_s = time.monotonic() - t_client
        cli.finish_reading()
        cli._append(f"exit {client_rc}")
        if client_rc != 0:
            raise CaptureError(f"client exited with code {client_rc}")
        time.sleep(0.5)  # FIN/ACK of the client's close

        # 4. server, then tshark
        if srv.p.poll() is not None:
            raise CaptureError(f"server died during the capture (exit code {srv.p.returncode})")
        server_rc = srv.stop(signal.SIGTERM, STOP_TIMEOUT)
        srv._append(f"exit {server_rc}")
        time.sleep(0.5)
        for _, _, cap in capturers:
            cap.p.send_signal(signal.SIGINT)  # all at once: they stop on the same packet
        also = []
        for kind, f, cap in capturers:
            rc = cap.stop(signal.SIGINT, STOP_TIMEOUT)
            if rc != 0:
                raise CaptureError(f"{cap.name} exited with code {rc}")
            if not f.exists() or f.stat().st_size == 0:
                raise CaptureError(f"capture file {f} is missing or empty")
            n = packets_captured(cap.lines)
            if n in ("0", "?"):
                raise CaptureError(f"{cap.name} captured no packets on port {port}")
            if kind != "main":
                also.append(f"also={kind}:{n}:{f}")
        packets = packets_captured(tsh.lines)
        summary = (f"OK server={args.server} client={args.client} mode={args.mode} "
                   f"security={args.security} port={port} "
                   f"packets={packets} bytes={out.stat().st_size} client_s={client_s:.1f} "
                   f"total_s={time.monotonic() - t_start:.1f} out={out}"
                   + "".join(f" {a}" for a in also))
        return summary
    finally:
        # Error paths: stop whatever still runs, tshark last and gently so that it reaps dumpcap
        # and leaves a readable partial capture behind.
        for p in reversed(procs):
            if p.p.poll() is None:
                capturer = p.name == "tshark" or p.name.startswith("capture-")
                p.stop(signal.SIGINT if capturer else signal.SIGTERM, 5.0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    log_path = args.log or args.out.with_suffix(".log")
    logbuf: list[str] = []
    try:
        summary = run(args, logbuf)
    except (CaptureError, KeyboardInterrupt) as exc:
        print(f"FAIL server={args.server} client={args.client} mode={args.mode} port={args.port}: {exc}",
              flush=True)
        _write_log(log_path, logbuf)
        tail = logbuf[-40:]
        if tail:
            print(f"--- last {len(tail)} lines of {log_path}:", file=sys.stderr)
            print("\n".join(tail), file=sys.stderr)
        return 1
    _write_log(log_path, logbuf)
    print(summary, flush=True)
    return 0


def _write_log(path: Path, lines: list[str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    except OSError as exc:
        print(f"capture.py: cannot write log {path}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
