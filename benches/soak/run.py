#!/usr/bin/env python3
"""Load and long runs of `uatap proxy` (issue #10, "Hardening"): `make soak`.

Everything runs on 127.0.0.1 and stops by itself. Three phases, each through a fresh proxy
(`uatap proxy --json-file events.jsonl --record rec.pcapng`) in front of the load server of
benches/e2e (`uatap-e2e load-server`: HEL/ACK, OPN, then PublishResponses of 100 items, ~3.1 KB,
paced per connection until the client half-closes), driven by `uatap-e2e load-client`:

  conns   --conns (1000) connections at once, --conns-rate (1) PublishResponses/s each, held
          --conns-seconds (120), then closed cleanly (CLO, FIN, read to the end)
  cycles  --cycles (10000) open/close cycles (connect, HEL, OPN, CLO, close), --parallel at a time
  soak    --minutes (30) of --soak-conns (100) connections at --soak-rate (4)
          PublishResponses/s each (about 1.25 MB/s), recorded into a ring buffer
          (--record-max-size 16 MB, --record-files 4) that rotates every few seconds

For each phase the proxy's VmRSS and open descriptors (/proc/PID/status, /proc/PID/fd) are
sampled at the start, every minute (5 min included), while the connections are held, and at
the end; the load average goes with every sample. Checks (any failure: exit status 2):

  - no connection error on either peer; both peers agree on every byte and PublishResponse
  - events: conn_open == conn_close == connections; publish events == PublishResponses the
    server sent; no decode_error; the conn_close byte counts sum to what each peer sent
  - bytes: the recording's TCP payload per leg (client-proxy, proxy-server) and direction equals
    what the peers sent. The ring deletes its oldest files, so a watcher hard-links every file
    of the ring while it exists (polled every 0.2 s), counts each one once the proxy has let
    go of it, then unlinks it: the count covers every file the ring ever had
  - descriptors back to the baseline once every connection closed (waited up to 30 s)
  - RSS flat: soak: at the end of the traffic at most --rss-growth-mib (16) above the 5-minute
    sample (the midpoint when the soak is shorter than 10 minutes); conns: while held at most
    --conn-kib (64) per connection + --rss-growth-mib above the start, and after the close at
    most --rss-growth-mib above while held;
    cycles: at the end at most --rss-growth-mib above the start

Results: OUT/results.json and a table on standard output (OUT: --out, default target/soak);
each phase's events, proxy log and (when it failed, or with --keep-recordings) recording in
OUT/<phase>/.

Usage: python3 benches/soak/run.py [--minutes 30] [--phases conns,cycles,soak] [--out DIR] ...
       make soak SOAK_MINUTES=30
"""

import argparse
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from procutil import fd_count, free_port, loadavg, rss_kib, wait_listening  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LOAD_BIN = ROOT / "benches" / "e2e" / "target" / "release" / "uatap-e2e"
UATAP_BIN = ROOT / "target" / "release" / "uatap"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)














def sample(pid, t0, label):
    return {"t_s": round(time.monotonic() - t0, 1), "label": label, "rss_kib": rss_kib(pid),
            "fds": fd_count(pid), "load": loadavg()}


# ------------------------------------------------------------------------------------------
# pcapng: TCP payload bytes per leg and direction

def count_pcapng(path, listen, upstream, sums):
    """Adds the TCP payload bytes of one pcapng file to sums =
    [client leg c2s, client leg s2c, server leg c2s, server leg s2c]; returns the packets read."""
    data = Path(path).read_bytes()
    off, e, links, packets = 0, "<", [], 0
    while off + 12 <= len(data):
        btype = struct.unpack_from(e + "I", data, off)[0]
        if btype == 0x0A0D0D0A:
            e = "<" if data[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            links = []
        blen = struct.unpack_from(e + "I", data, off + 4)[0]
        if blen < 12 or off + blen > len(data):
            raise ValueError(f"{path}: truncated block at {off}")
        if btype == 1:
            links.append(struct.unpack_from(e + "H", data, off + 8)[0])
        elif btype == 6:
            iface, _, _, caplen = struct.unpack_from(e + "IIII", data, off + 8)
            pkt = data[off + 28:off + 28 + caplen]
            packets += 1
            add_segment(pkt, links[iface], listen, upstream, sums, path)
        off += blen
    if off != len(data):
        raise ValueError(f"{path}: {len(data) - off} trailing bytes")
    return packets


def add_segment(pkt, link, listen, upstream, sums, path):
    if link == 1:  # Ethernet
        ethertype = struct.unpack_from(">H", pkt, 12)[0]
        ip = pkt[14:]
    elif link in (101, 228, 229):  # raw IP
        ip = pkt
        ethertype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    else:
        raise ValueError(f"{path}: link type {link}")
    if ethertype == 0x0800:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        if ip[9] != 6:
            return
        tcp, tcp_len = ip[ihl:], total - ihl
    elif ethertype == 0x86DD:
        if ip[6] != 6:
            return
        tcp, tcp_len = ip[40:], struct.unpack_from(">H", ip, 4)[0]
    else:
        return
    sport, dport = struct.unpack_from(">HH", tcp, 0)
    n = tcp_len - (tcp[12] >> 4) * 4
    if dport == listen:
        sums[0] += n
    elif sport == listen:
        sums[1] += n
    elif dport == upstream:
        sums[2] += n
    elif sport == upstream:
        sums[3] += n
    else:
        raise ValueError(f"{path}: segment {sport}->{dport} of neither leg")


class RingWatcher(threading.Thread):
    """Hard-links every file of a rotating recording while it exists, so the files the ring
    deletes are still counted; counts a file once the proxy deleted it (it is final then), the
    rest at the end, and unlinks each after counting (the disk holds about one ring more)."""

    def __init__(self, directory, prefix, listen, upstream):
        super().__init__(daemon=True)
        self.dir, self.prefix = Path(directory), prefix
        self.kept = self.dir / "kept"
        self.kept.mkdir(exist_ok=True)
        self.listen, self.upstream = listen, upstream
        self.sums = [0, 0, 0, 0]
        self.files_seen, self.most_present, self.packets = 0, 0, 0
        self.pending = {}  # name -> hard link
        self.halt = threading.Event()
        self.error = None

    def names(self):
        return {p.name for p in self.dir.iterdir()
                if p.name.startswith(self.prefix) and p.name.endswith(".pcapng")}

    def look(self):
        present = self.names()
        self.most_present = max(self.most_present, len(present))
        for name in sorted(present - set(self.pending)):
            if (self.kept / name).exists():
                continue
            try:
                os.link(self.dir / name, self.kept / name)
            except FileNotFoundError:
                continue  # deleted before we got to it: the byte check will show it
            self.pending[name] = self.kept / name
            self.files_seen += 1
        for name in sorted(set(self.pending) - present):
            self.count(name)

    def count(self, name):
        link = self.pending.pop(name)
        self.packets += count_pcapng(link, self.listen, self.upstream, self.sums)
        link.unlink()

    def run(self):
        try:
            while not self.halt.is_set():
                self.look()
                self.halt.wait(0.2)
        except Exception as e:  # reported by finish()
            self.error = e

    def finish(self):
        """After the proxy stopped: the last look, then the files still present."""
        self.halt.set()
        self.join()
        if self.error:
            raise self.error
        self.look()
        for name in sorted(self.pending):
            self.count(name)
        return self.sums


# ------------------------------------------------------------------------------------------
# Events

def scan_events(path):
    kinds, close_c2s, close_s2c = {}, 0, 0
    with open(path, "rb") as f:
        for line in f:
            ev = json.loads(line)
            k = ev.get("kind")
            kinds[k] = kinds.get(k, 0) + 1
            if k == "conn_close":
                close_c2s += ev["bytes_c2s"]
                close_s2c += ev["bytes_s2c"]
    return {"kinds": kinds, "close_bytes_c2s": close_c2s, "close_bytes_s2c": close_s2c}


# ------------------------------------------------------------------------------------------
# One phase

class Phase:
    def __init__(self, args, name, server_rate, client_args, duration_s, ring=False):
        self.args, self.name = args, name
        self.server_rate, self.client_args = server_rate, client_args
        self.duration_s, self.ring = duration_s, ring
        self.dir = Path(args.out) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        for p in self.dir.glob("*.pcapng"):
            p.unlink()
        self.procs = []
        self.failures = []

    def spawn(self, cmd, **kw):
        p = subprocess.Popen([str(c) for c in cmd], **kw)
        self.procs.append(p)
        return p

    def check(self, ok, what):
        if not ok:
            self.failures.append(what)
            log(f"  FAIL {self.name}: {what}")

    def server_stats(self, server):
        server.stdin.write(b"\n")
        server.stdin.flush()
        return json.loads(server.stdout.readline())

    def run(self):
        a = self.args
        sport, pport = free_port(), free_port()
        server = self.spawn([LOAD_BIN, "load-server", "--listen", f"127.0.0.1:{sport}",
                             "--rate", self.server_rate], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        wait_listening(sport, server, timeout=20.0)
        rec = self.dir / "rec.pcapng"
        cmd = [UATAP_BIN, "proxy", "--listen", f"127.0.0.1:{pport}",
               "--upstream", f"127.0.0.1:{sport}", "--json-file", self.dir / "events.jsonl",
               "--record", rec]
        if self.ring:
            cmd += ["--record-max-size", a.record_max_size, "--record-files", a.record_files]
        proxy_log = open(self.dir / "proxy.log", "wb")
        proxy = self.spawn(cmd, stdout=proxy_log, stderr=subprocess.STDOUT)
        wait_listening(pport, proxy, timeout=20.0)
        # The hub, sink and recording threads are up.
        time.sleep(1.0)
        pid = proxy.pid
        t0 = time.monotonic()
        samples = [sample(pid, t0, "start")]
        baseline = samples[0]["fds"]
        watcher = None
        if self.ring:
            watcher = RingWatcher(self.dir, "rec_", pport, sport)
            watcher.start()
        log(f"{self.name}: proxy pid {pid}, {baseline} fds, {samples[0]['rss_kib']} KiB; "
            f"client {' '.join(map(str, self.client_args))}")
        client = self.spawn([LOAD_BIN, "load-client", "--connect", f"127.0.0.1:{pport}",
                             *self.client_args], stdout=subprocess.PIPE)
        peak_fds = baseline
        next_minute = 60.0
        held_at = self.duration_s - 3 if self.duration_s else None
        held = None
        ref_at = None
        if self.ring:
            ref_at = 300.0 if self.duration_s >= 600 else self.duration_s / 2
        ref = None
        while client.poll() is None:
            time.sleep(0.5)
            el = time.monotonic() - t0
            try:
                s = sample(pid, t0, "")
            except OSError:
                break
            peak_fds = max(peak_fds, s["fds"])
            if ref_at is not None and ref is None and el >= ref_at:
                s["label"] = "5 min" if ref_at == 300.0 else "midpoint"
                ref = s
                samples.append(s)
                log(f"  {self.name} {s}")
                if ref_at == 300.0:
                    next_minute += 60.0  # this is the minute's sample too
            if el >= next_minute:
                next_minute += 60.0
                s = dict(s, label=f"{int(el // 60)} min")
                samples.append(s)
                log(f"  {self.name} {s}")
            if held_at is not None and held is None and el >= held_at:
                held = dict(s, label="end of traffic")
                samples.append(held)
        out, _ = client.communicate()
        client_res = json.loads(out.decode().strip().splitlines()[-1])
        c = client_res["counters"]
        # Every connection ended on the server too.
        end = time.monotonic() + 30
        s_res = self.server_stats(server)
        while s_res["closed"] < c["opened"] and time.monotonic() < end:
            time.sleep(0.2)
            s_res = self.server_stats(server)
        end = time.monotonic() + 30
        while fd_count(pid) > baseline and time.monotonic() < end:
            time.sleep(0.2)
        after = sample(pid, t0, "end (connections closed)")
        samples.append(after)
        proxy.send_signal(signal.SIGTERM)
        try:
            rc = proxy.wait(120)
        except subprocess.TimeoutExpired:
            proxy.kill()
            rc = "killed"
        server.stdin.close()
        server.wait(10)
        self.check(rc == 0, f"proxy exit status {rc}")

        if watcher:
            sums = watcher.finish()
            files, most_present, packets = watcher.files_seen, watcher.most_present, watcher.packets
        else:
            sums = [0, 0, 0, 0]
            files, most_present = 1, 1
            packets = count_pcapng(rec, pport, sport, sums)
        ev = scan_events(self.dir / "events.jsonl")
        kinds = ev["kinds"]

        n = c["opened"]
        self.check(c["errors"] == 0 and s_res["errors"] == 0,
                   f"connection errors: client {c['errors']}, server {s_res['errors']}")
        self.check(c["closed"] == n and s_res["opened"] == n and s_res["closed"] == n,
                   f"connections: client {c['opened']}/{c['closed']}, server {s_res['opened']}/{s_res['closed']}")
        self.check(c["bytes_sent"] == s_res["bytes_received"] and s_res["bytes_sent"] == c["bytes_received"],
                   "the peers disagree on the bytes")
        self.check(c["publish_responses"] == s_res["publish_responses"],
                   "the peers disagree on the PublishResponses")
        self.check(kinds.get("conn_open", 0) == n and kinds.get("conn_close", 0) == n,
                   f"conn_open {kinds.get('conn_open', 0)}, conn_close {kinds.get('conn_close', 0)}, connections {n}")
        self.check(kinds.get("publish", 0) == s_res["publish_responses"],
                   f"publish events {kinds.get('publish', 0)} != PublishResponses sent {s_res['publish_responses']}")
        self.check(kinds.get("decode_error", 0) == 0, f"{kinds.get('decode_error')} decode errors")
        self.check(ev["close_bytes_c2s"] == c["bytes_sent"] and ev["close_bytes_s2c"] == s_res["bytes_sent"],
                   "conn_close byte counts differ from what the peers sent")
        want = [c["bytes_sent"], s_res["bytes_sent"], c["bytes_sent"], s_res["bytes_sent"]]
        self.check(sums == want, f"recorded bytes {sums} != sent {want}")
        self.check(after["fds"] == baseline, f"descriptors {after['fds']} at the end, baseline {baseline}")
        growth_kib = a.rss_growth_mib * 1024
        if self.ring:
            self.check(files > 1 and most_present <= int(a.record_files),
                       f"ring: {files} files, {most_present} at once")
            last = held or after
            self.check(ref is not None and last["rss_kib"] <= ref["rss_kib"] + growth_kib,
                       f"RSS {last['rss_kib']} KiB at the end of the traffic, "
                       f"{ref and ref['rss_kib']} KiB at {ref and ref['label']}")
        elif held:
            grew = held["rss_kib"] - samples[0]["rss_kib"]
            self.check(grew <= a.conn_kib * n + growth_kib,
                       f"RSS grew {grew} KiB with {n} connections held "
                       f"(at most {a.conn_kib} KiB each + {a.rss_growth_mib} MiB)")
            self.check(after["rss_kib"] <= held["rss_kib"] + growth_kib,
                       f"RSS {after['rss_kib']} KiB after the connections closed, {held['rss_kib']} KiB while held")
        else:
            self.check(after["rss_kib"] <= samples[0]["rss_kib"] + growth_kib,
                       f"RSS {after['rss_kib']} KiB after the connections closed, {samples[0]['rss_kib']} KiB at the start")
        if not self.failures and not a.keep_recordings:
            for p in self.dir.glob("*.pcapng"):
                p.unlink()
        return {
            "phase": self.name,
            "client": client_res,
            "server": s_res,
            "connections": n,
            "fd_baseline": baseline,
            "fd_peak": peak_fds,
            "fd_end": after["fds"],
            "samples": samples,
            "events": ev,
            "recorded_bytes": sums,
            "peer_bytes": want,
            "recording_files": files,
            "recording_files_most_at_once": most_present,
            "recorded_packets": packets,
            "failures": self.failures,
        }

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def mib(kib):
    return f"{kib / 1024:.1f}"


def table(results, args):
    lines = []
    out = lines.append
    out(f"uatap soak: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, "
        f"load at the end {loadavg()}")
    for r in results:
        c, s = r["client"]["counters"], r["server"]
        out("")
        out(f"== {r['phase']}: {r['connections']} connections in {r['client']['secs']:.0f} s "
            f"({'PASS' if not r['failures'] else 'FAIL'})")
        out(f"   descriptors: baseline {r['fd_baseline']}, peak {r['fd_peak']}, end {r['fd_end']}")
        held = [x for x in r["samples"] if x["label"] == "end of traffic"]
        if held and r["phase"] == "conns":
            per = (held[0]["rss_kib"] - r["samples"][0]["rss_kib"]) / max(r["connections"], 1)
            out(f"   RSS per held connection: {per:.1f} KiB")
        out(f"   {'sample':<26} {'t (s)':>8} {'RSS MiB':>8} {'fds':>6}  load")
        for x in r["samples"]:
            out(f"   {x['label'] or '-':<26} {x['t_s']:>8} {mib(x['rss_kib']):>8} {x['fds']:>6}  "
                + " ".join(f"{v:.2f}" for v in x["load"]))
        k = r["events"]["kinds"]
        out(f"   PublishResponses: server sent {s['publish_responses']}, client got "
            f"{c['publish_responses']}, publish events {k.get('publish', 0)}")
        out(f"   events: conn_open {k.get('conn_open', 0)}, conn_close {k.get('conn_close', 0)}, "
            f"decode_error {k.get('decode_error', 0)}")
        out(f"   bytes c2s: client sent {c['bytes_sent']}, events {r['events']['close_bytes_c2s']}, "
            f"recorded {r['recorded_bytes'][0]} (client leg) {r['recorded_bytes'][2]} (server leg)")
        out(f"   bytes s2c: server sent {s['bytes_sent']}, events {r['events']['close_bytes_s2c']}, "
            f"recorded {r['recorded_bytes'][1]} (client leg) {r['recorded_bytes'][3]} (server leg)")
        out(f"   recording: {r['recording_files']} files ({r['recording_files_most_at_once']} at once), "
            f"{r['recorded_packets']} packets")
        for f in r["failures"]:
            out(f"   FAIL: {f}")
    return "\n".join(lines)


def main():
    global UATAP_BIN
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="soak duration (default 30)")
    ap.add_argument("--phases", default="conns,cycles,soak")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--conns-rate", default="1", help="PublishResponses/s per connection")
    ap.add_argument("--conns-seconds", type=float, default=120.0)
    ap.add_argument("--cycles", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--soak-conns", type=int, default=100)
    ap.add_argument("--soak-rate", default="4", help="PublishResponses/s per connection")
    ap.add_argument("--record-max-size", default="16", help="MB per ring file")
    ap.add_argument("--record-files", default="4")
    ap.add_argument("--rss-growth-mib", type=float, default=16.0,
                    help="soak: RSS growth allowed from the 5-minute sample to the end; "
                         "conns: after the close over while held; cycles: end over start")
    ap.add_argument("--conn-kib", type=float, default=64.0,
                    help="conns: RSS per held connection allowed (besides --rss-growth-mib)")
    ap.add_argument("--out", default=str(ROOT / "target" / "soak"))
    ap.add_argument("--keep-recordings", action="store_true",
                    help="keep the recordings of the phases that passed (they are large)")
    ap.add_argument("--uatap", default=str(UATAP_BIN), help="the uatap binary (default: release)")
    args = ap.parse_args()
    UATAP_BIN = Path(args.uatap)
    for b in (LOAD_BIN, UATAP_BIN):
        if not b.exists():
            sys.exit(f"{b} missing: build it first (make soak does)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    plan = {
        "conns": lambda: Phase(args, "conns", args.conns_rate,
                               ["--mode", "hold", "--conns", args.conns, "--seconds", args.conns_seconds],
                               args.conns_seconds),
        "cycles": lambda: Phase(args, "cycles", "0",
                                ["--mode", "cycles", "--cycles", args.cycles, "--parallel", args.parallel],
                                None),
        "soak": lambda: Phase(args, "soak", args.soak_rate,
                              ["--mode", "hold", "--conns", args.soak_conns, "--seconds", args.minutes * 60],
                              args.minutes * 60, ring=True),
    }
    results = []
    started = time.time()
    for name in args.phases.split(","):
        phase = plan[name]()
        try:
            results.append(phase.run())
        finally:
            phase.cleanup()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    doc = {"started": started, "commit": commit, "uatap": str(UATAP_BIN),
           "uatap_mtime": os.path.getmtime(UATAP_BIN), "args": vars(args),
           "cpus": os.cpu_count(), "results": results}
    (Path(args.out) / "results.json").write_text(json.dumps(doc, indent=1))
    text = table(results, args)
    (Path(args.out) / "results.txt").write_text(text + "\n")
    print(text)
    failed = [f for r in results for f in r["failures"]]
    sys.exit(2 if failed else 0)


if __name__ == "__main__":
    main()
