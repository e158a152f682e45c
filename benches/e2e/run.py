#!/usr/bin/env python3
"""End-to-end benchmark: `uatap proxy` against a plain tokio copy_bidirectional forwarder.

Everything runs on loopback in one go, with the synthetic OPC UA client and server of
benches/e2e (src/main.rs). Candidates, each a fresh process per run:

  fwd        benches/e2e forwarder: tokio::io::copy_bidirectional, TCP_NODELAY (the baseline)
  fwd2       a second, identical forwarder: the A/A noise reference (--no-aa drops it)
  uatap      uatap proxy --json-file F          (decodes every message, events to a file)
  uatap+rec  uatap proxy --json-file F --record F.pcapng (both legs in full while the disk keeps
             up; when the recording falls behind, the server leg's packets without their bytes,
             reported as the share of its bytes written so)
  uatap+rec1 the same with --record-payload-once (the server leg's packets without their bytes)

Workloads:
  stream     one connection; the server streams PublishResponses (100 MonitoredItemNotifications
             each, ~3.1 KB) as fast as it can; the client acknowledges every 10th. MB/s at the client.
  pp1        one connection ping-ponging ReadRequests (informational: too noisy to judge)
  pp100      100 connections ping-ponging ReadRequests; p50/p99 round trip (HDR histogram)

For R rounds (default 5), every workload runs every candidate once, the candidates' order
rotating from round to round so that drifting background load hits all of them. Ratios are
taken per round against that round's fwd run, and the median of those is reported (and the
ratio of the medians too). uatap's event file is checked after each run: the messages must
have been decoded (publish events, or the messages counted in the connections' summaries) and any `N bytes missing` decode errors
(the analysis could not keep up and the tap dropped bytes, which the forwarding path never waits
for) are counted as the share of the stream the analysis did not see.

Memory per idle connection: 1000 connections (after HEL/ACK and OPN, and again as raw TCP)
opened through a fresh proxy; (VmRSS with them - VmRSS before) / 1000.

Usage: python3 benches/e2e/run.py [--rounds 5] [--seconds 5] [--warmup 1] [--workloads stream,pp1,pp100]
                                  [--no-aa] [--no-build] [--uatap PATH] [--workdir DIR] [--rate R]
       make bench-proxy ARGS="--rounds 7"
Exit status 0 when every bar is met, 2 when one is missed, 1 on an error.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from procutil import cpu_secs, free_port, loadavg, rss_kib, wait_listening  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BENCH_BIN = HERE / "target" / "release" / "uatap-e2e"

BARS = {
    "stream_uatap": 0.9,  # uatap / fwd stream MB/s, at least
    "stream_rec": 0.8,  # uatap+rec / fwd stream MB/s, at least
    "pp100_p99": 1.2,  # uatap / fwd p99 round trip, at most
    "idle_kib": 64.0,  # KiB per idle connection, at most
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)














def thread_cpu_secs(pid):
    """CPU seconds by thread name (tokio-rt-worker: forwarding; uatap: main + analysis hub)."""
    by = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (t / "comm").read_text().strip()
            fields = (t / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        by[comm] = by.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return by


def stop(proc, timeout=60):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


MISSING = re.compile(rb'"what":"(\d+) bytes missing')
BYTES = re.compile(rb'"bytes_c2s":(\d+),"bytes_s2c":(\d+)')
SUMMARY_MESSAGES = re.compile(rb'"messages":(\d+)')
HEADERS_ONLY = re.compile(rb'"action":"caught_up".*"headers_only_bytes":(\d+)')
STOPPED = re.compile(rb'"action":"stopped","reason":"([^"]*)"')


def scan_events(path):
    """Counts of event kinds and bytes the analysis did not see, streaming through the file."""
    kinds = {}
    missing = 0
    other_decode_errors = 0
    total_bytes = 0
    summary_messages = 0
    headers_only = 0
    stopped = None
    kind_re = re.compile(rb'"kind":"([a-z_]+)"')
    with open(path, "rb") as f:
        rest = b""
        while True:
            block = f.read(64 << 20)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            block, rest = block[:cut], block[cut:]
            for k in (b"message", b"publish"):
                kinds[k.decode()] = kinds.get(k.decode(), 0) + block.count(b'"kind":"' + k + b'"')
            for line in block.splitlines():
                if b'"kind":"message"' in line or b'"kind":"publish"' in line:
                    continue
                m = kind_re.search(line)
                if not m:
                    continue
                k = m.group(1).decode()
                kinds[k] = kinds.get(k, 0) + 1
                if k == "decode_error":
                    mm = MISSING.search(line)
                    if mm:
                        missing += int(mm.group(1))
                    else:
                        other_decode_errors += 1
                elif k == "conn_close":
                    mb = BYTES.search(line)
                    if mb:
                        total_bytes += int(mb.group(1)) + int(mb.group(2))
                elif k == "summary":
                    ms = SUMMARY_MESSAGES.search(line)
                    if ms:
                        summary_messages += int(ms.group(1))
                elif k == "recording":
                    mh = HEADERS_ONLY.search(line)
                    if mh:
                        headers_only += int(mh.group(1))
                    ms = STOPPED.search(line)
                    if ms:
                        stopped = ms.group(1).decode(errors="replace")
    return {"kinds": kinds, "missing_bytes": missing, "other_decode_errors": other_decode_errors,
            "analysed_bytes": total_bytes, "summary_messages": summary_messages,
            "headers_only_bytes": headers_only, "recording_stopped": stopped}


def analysis_cpu(r):
    """CPU seconds of uatap's analysis side: the main thread (the analysis hub) and the sink and
    recording threads (uatap-sinks, uatap-record); the forwarding runs on tokio-rt-worker."""
    return sum(v for k, v in r["proxy_thread_cpu_s"].items() if k == "uatap" or (k.startswith("uatap-") and k != "uatap-e2e"))


def analysed_share(ev):
    """Share of the proxied bytes the analysis saw: conn_close counts the bytes it was handed,
    the `N bytes missing` decode errors the ones dropped from the tap."""
    seen = ev["analysed_bytes"]
    return seen / max(seen + ev["missing_bytes"], 1)


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.uatap = self.work / "uatap"
        self.servers = {}
        self.procs = []

    # -- processes

    def spawn(self, cmd, **kw):
        p = subprocess.Popen([str(c) for c in cmd], **kw)
        self.procs.append(p)
        return p

    def start_servers(self):
        a = self.args
        for mode in ("stream", "pingpong"):
            port = free_port()
            cmd = [BENCH_BIN, "server", "--listen", f"127.0.0.1:{port}", "--mode", mode]
            if mode == "stream" and a.rate:
                cmd += ["--rate", a.rate]
            p = self.spawn(cmd, stderr=subprocess.DEVNULL)
            wait_listening(port, p)
            self.servers[mode] = port

    def paced_server(self, rate):
        port = free_port()
        p = self.spawn([BENCH_BIN, "server", "--listen", f"127.0.0.1:{port}", "--mode", "stream",
                        "--rate", rate], stderr=subprocess.DEVNULL)
        wait_listening(port, p)
        return p, port

    def lossless_probe(self, cand, rate, seconds):
        """One paced stream run: did the analysis see every byte at `rate` messages/s?"""
        server, sport = self.paced_server(rate)
        proxy, port, files = self.start_candidate(cand, sport, f"lossless-{cand.replace('+', '_')}")
        try:
            res = self.client(port, "stream", 1, seconds=seconds)
        finally:
            stop(proxy)
            stop(server)
        ev = scan_events(files["json"])
        for f in files.values():
            f.unlink(missing_ok=True)
        share = analysed_share(ev)
        kept_pace = res["msgs_per_s"] >= 0.97 * rate
        return share >= 1.0 and kept_pace, share, res["mb_per_s"], res["msgs_per_s"]

    def lossless_search(self, cand, hi_rate, steps, seconds):
        """Highest paced rate (messages/s) at which the analysis lost nothing, by bisection
        between 0 and `hi_rate` (on a log scale once a passing rate is known)."""
        lo, hi = 0.0, hi_rate
        rate = hi_rate / 4
        best = None
        for _ in range(steps):
            ok, share, mbs, mps = self.lossless_probe(cand, rate, seconds)
            log(f"lossless {cand:9s} {rate:9.0f} msg/s ({mbs:7.1f} MB/s): "
                f"{'all decoded' if ok else f'analysed {100 * share:.1f}%, client {mps:.0f} msg/s'}")
            if ok:
                lo, best = rate, (rate, mbs)
            else:
                hi = rate
            rate = (lo * hi) ** 0.5 if lo > 0 else hi / 4 if hi == hi_rate else hi / 2
        return best

    def start_candidate(self, cand, upstream_port, tag):
        port = free_port()
        listen = f"127.0.0.1:{port}"
        upstream = f"127.0.0.1:{upstream_port}"
        files = {}
        if cand in ("fwd", "fwd2"):
            cmd = [BENCH_BIN, "forwarder", "--listen", listen, "--upstream", upstream]
        else:
            files["json"] = self.work / f"{tag}.jsonl"
            cmd = [self.uatap, "proxy", "--listen", listen, "--upstream", upstream,
                   "--json-file", files["json"]]
            if cand in ("uatap+rec", "uatap+rec1"):
                files["rec"] = self.work / f"{tag}.pcapng"
                cmd += ["--record", files["rec"]]
            if cand == "uatap+rec1":
                cmd += ["--record-payload-once"]
        p = self.spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(port, p)
        return p, port, files

    def client(self, port, mode, conns=1, extra=(), seconds=None):
        a = self.args
        seconds = a.seconds if seconds is None else seconds
        cmd = [BENCH_BIN, "client", "--connect", f"127.0.0.1:{port}", "--mode", mode,
               "--seconds", seconds, "--warmup", a.warmup, "--conns", conns, *extra]
        out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                             timeout=seconds + a.warmup + 60)
        if out.returncode != 0:
            raise RuntimeError(f"client failed: {out.stderr.strip()}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    # -- one run

    def run_one(self, workload, cand, rnd):
        tag = f"r{rnd}-{workload}-{cand.replace('+', '_')}"
        mode = "stream" if workload == "stream" else "pingpong"
        conns = {"stream": 1, "pp1": 1, "pp100": self.args.conns}[workload]
        proxy, port, files = self.start_candidate(cand, self.servers[mode], tag)
        load = loadavg()[0]
        try:
            res = self.client(port, mode, conns)
            res["proxy_cpu_s"] = cpu_secs(proxy.pid)
            res["proxy_thread_cpu_s"] = thread_cpu_secs(proxy.pid)
            res["proxy_rss_kib"] = rss_kib(proxy.pid)
        finally:
            stop(proxy)
        res["load1"] = float(load)
        if "json" in files:
            ev = scan_events(files["json"])
            res["events"] = ev
            if "rec" in files and files["rec"].exists():
                res["rec_bytes"] = files["rec"].stat().st_size
            self.check_events(workload, res, ev)
            if not self.args.keep:
                for f in files.values():
                    f.unlink(missing_ok=True)
        return res

    def check_events(self, workload, res, ev):
        k = ev["kinds"]
        if ev.get("recording_stopped"):
            raise RuntimeError(f"{workload}: the recording stopped ({ev['recording_stopped']}): "
                               "free disk space for the run, the figures would not count it")
        if k.get("conn_close", 0) == 0:
            raise RuntimeError(f"{workload}: no conn_close event: the event file is incomplete "
                               "(a full disk?)")
        if ev["other_decode_errors"]:
            raise RuntimeError(f"{workload}: uatap reported {ev['other_decode_errors']} decode errors "
                               "that are not dropped bytes: the synthetic traffic is not valid")
        if workload == "stream":
            if k.get("publish", 0) < 1000:
                raise RuntimeError(f"stream: only {k.get('publish', 0)} publish events")
            res["analysed"] = analysed_share(ev)
            res["publish_events"] = k.get("publish", 0)
        else:
            # Every round trip is a ReadRequest and a ReadResponse: the connections' summaries
            # count the messages decoded (`message` events are written only with --messages).
            decoded = max(k.get("message", 0), ev["summary_messages"])
            if decoded < res["count"]:
                raise RuntimeError(f"{workload}: {decoded} messages decoded for "
                                   f"{res['count']} round trips")
            res["analysed"] = analysed_share(ev)

    # -- idle memory

    def idle_memory(self, cand, handshake):
        a = self.args
        proxy, port, files = self.start_candidate(cand, self.servers["pingpong"], f"idle-{cand}")
        try:
            time.sleep(0.5)
            before = rss_kib(proxy.pid)
            cmd = [BENCH_BIN, "client", "--connect", f"127.0.0.1:{port}", "--mode", "idle",
                   "--conns", a.idle_conns, "--seconds", 600, "--handshake", int(handshake)]
            c = subprocess.Popen([str(x) for x in cmd], stdout=subprocess.PIPE, text=True)
            try:
                line = c.stdout.readline()
                if not line.startswith("READY"):
                    raise RuntimeError(f"idle client: {line!r}")
                time.sleep(1.0)
                after = rss_kib(proxy.pid)
            finally:
                c.kill()
                c.wait()
        finally:
            stop(proxy)
            for f in files.values():
                f.unlink(missing_ok=True)
        return {"before_kib": before, "after_kib": after,
                "per_conn_kib": (after - before) / a.idle_conns}

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def report(d):
    """The result table from the data of a run (as saved in OUT.json); returns (text, all met)."""
    a = d["args"]
    results = d["results"]
    workloads = list(results)
    cands = list(next(iter(results.values()))) if results else []
    idle = d.get("idle", {})
    lossless = d.get("lossless", {})
    lines = []
    out = lines.append
    out(f"uatap proxy vs tokio copy_bidirectional forwarder, loopback, {a['rounds']} interleaved rounds, "
        f"{a['seconds']:g}s measured (+{a['warmup']:g}s warm-up) per run")
    out(f"machine: {d['cpus']} CPUs; load average at start {' '.join(map(str, d['load_start']))}, "
        f"at end {' '.join(map(str, d['load_end']))}; took {d['took_s']:.0f}s")
    out(f"uatap: {a['uatap']}")
    out("ratios: median over rounds of (candidate / fwd of the same round); [min..max]; "
        "'of medians' = median(candidate) / median(fwd)")
    out("")
    verdicts = []

    def ratio_stats(w, c, key):
        rs = [x[key] / f[key] for x, f in zip(results[w][c], results[w]["fwd"]) if f[key]]
        return med(rs), min(rs), max(rs), med([x[key] for x in results[w][c]]) / med(
            [f[key] for f in results[w]["fwd"]])

    def analysed(rs):
        if "analysed" not in rs[0]:
            return None, f"{'-':>9s}"
        an = med([r["analysed"] for r in rs])
        return an, f"{100 * an:8.1f}%"

    for w in workloads:
        if w == "stream":
            out("stream (1 connection, PublishResponses of 100 items, MB/s at the client, higher is better)")
            out(f"  {'candidate':10s} {'median MB/s':>12s} {'ratio':>7s} {'[min..max]':>14s} {'of medians':>10s}"
                f" {'analysed':>9s} {'proxy CPU s/GB':>14s} {'hub us/msg':>10s}")
            for c in cands:
                rs = results[w][c]
                mbs = med([r["mb_per_s"] for r in rs])
                cpu = med([r["proxy_cpu_s"] / (r["bytes_total"] / 1e9) for r in rs])
                an, an_s = analysed(rs)
                hub = "-"
                if "events" in rs[0]:
                    hub = f"{med([1e6 * analysis_cpu(r) / max(r['events']['kinds'].get('publish', 0), 1) for r in rs]):.2f}"
                if c == "fwd":
                    out(f"  {c:10s} {mbs:12.1f} {'1.00':>7s} {'':>14s} {'':>10s} {an_s} {cpu:14.2f} {hub:>10s}")
                    continue
                m, lo, hi, om = ratio_stats(w, c, "mb_per_s")
                out(f"  {c:10s} {mbs:12.1f} {m:7.2f} {f'[{lo:.2f}..{hi:.2f}]':>14s} {om:10.2f} {an_s} {cpu:14.2f} {hub:>10s}")
                if c == "uatap+rec" and "events" in rs[0]:
                    # A recording behind the traffic writes the server leg's bytes once, on the
                    # client's leg (`recording` events, action caught_up).
                    cut = med([r["events"].get("headers_only_bytes", 0) / max(r["events"]["analysed_bytes"], 1)
                               for r in rs])
                    out(f"  {'':10s} the server leg as headers only (recording behind the disk): "
                        f"{100 * cut:.1f}% of its bytes (median)")
                bar = {"uatap": "stream_uatap", "uatap+rec": "stream_rec", "uatap+rec1": "stream_rec"}.get(c)
                if bar:
                    complete = an is not None and min(r["analysed"] for r in rs) >= 1.0
                    verdicts.append((f"stream flat out: {c} >= {BARS[bar]}x fwd, decoding every message", m,
                                     m >= BARS[bar] and complete,
                                     "" if complete else
                                     f"its analysis saw only {100 * an:.1f}% of the bytes (median); "
                                     f"the rest was dropped from the tap, never from the forwarding"))
        else:
            n = 1 if w == "pp1" else a["conns"]
            out(f"{w} ({n} connection{'s' if n > 1 else ''} ping-ponging ReadRequests, round trip in us, lower is better"
                f"{'; informational, too noisy to judge' if w == 'pp1' else ''})")
            out(f"  {'candidate':10s} {'p50':>9s} {'p99':>9s} {'p99 ratio':>9s} {'[min..max]':>14s} {'of medians':>10s}"
                f" {'p50 ratio':>9s} {'rt/s':>8s} {'analysed':>9s}")
            for c in cands:
                rs = results[w][c]
                p50 = med([r["p50_us"] for r in rs])
                p99 = med([r["p99_us"] for r in rs])
                rate = med([r["rate"] for r in rs])
                an, an_s = analysed(rs)
                if c == "fwd":
                    out(f"  {c:10s} {p50:9.1f} {p99:9.1f} {'1.00':>9s} {'':>14s} {'':>10s} {'1.00':>9s} {rate:8.0f} {an_s}")
                    continue
                m, lo, hi, om = ratio_stats(w, c, "p99_us")
                m50 = ratio_stats(w, c, "p50_us")[0]
                out(f"  {c:10s} {p50:9.1f} {p99:9.1f} {m:9.2f} {f'[{lo:.2f}..{hi:.2f}]':>14s} {om:10.2f} {m50:9.2f} {rate:8.0f} {an_s}")
                if w == "pp100" and c == "uatap":
                    verdicts.append((f"pp100 uatap p99 <= {BARS['pp100_p99']}x fwd", m,
                                     m <= BARS["pp100_p99"], ""))
        out("")
    if lossless:
        fwd_mbs = med([r["mb_per_s"] for r in results["stream"]["fwd"]])
        out(f"stream paced: highest rate probed with every byte decoded ({a['lossless_steps']}-step search, "
            f"3 s each, after the rounds; vs the median fwd {fwd_mbs:.1f} MB/s flat out)")
        for c, best in lossless.items():
            if best is None:
                out(f"  {c:10s} none of the probed rates was decoded in full")
                verdict = 0.0
            else:
                verdict = best[1] / fwd_mbs
                out(f"  {c:10s} {best[0]:9.0f} msg/s = {best[1]:7.1f} MB/s = {verdict:.2f}x fwd")
            bar = BARS["stream_uatap" if c == "uatap" else "stream_rec"]
            verdicts.append((f"stream paced: {c} lossless rate >= {bar}x fwd throughput", verdict,
                             verdict >= bar, ""))
        out("")
    if idle:
        out(f"memory per idle connection ({a['idle_conns']} connections, VmRSS with them - VmRSS before)")
        for key, v in idle.items():
            c, kind = key.split("/")
            out(f"  {c:6s} {'after HEL/ACK+OPN' if kind == 'hel_opn' else 'raw TCP, no bytes':18s} "
                f"{v['before_kib']:7d} -> {v['after_kib']:7d} KiB  = {v['per_conn_kib']:6.1f} KiB/conn")
        worst = max(v["per_conn_kib"] for k, v in idle.items() if k.startswith("uatap/"))
        verdicts.append((f"uatap memory per idle connection <= {BARS['idle_kib']:g} KiB", worst,
                         worst <= BARS["idle_kib"], ""))
        out("")
    out("bars")
    for name, value, ok, note in verdicts:
        out(f"  {'MET   ' if ok else 'MISSED'} {name}: {value:.2f}{'  (' + note + ')' if note else ''}")
    return "\n".join(lines), all(ok for _, _, ok, _ in verdicts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before that")
    ap.add_argument("--conns", type=int, default=100, help="connections of the pp100 workload")
    ap.add_argument("--idle-conns", type=int, default=1000)
    ap.add_argument("--workloads", default="stream,pp1,pp100")
    ap.add_argument("--no-aa", action="store_true", help="no second forwarder (A/A reference)")
    ap.add_argument("--candidates", default="",
                    help="only these besides fwd, comma-separated (uatap,uatap+rec,uatap+rec1,fwd2)")
    ap.add_argument("--no-idle", action="store_true", help="skip the idle-memory measurement")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--lossless-steps", type=int, default=6,
                    help="probes of the search for the highest stream rate uatap decodes without "
                         "losing bytes (0: skip)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="pace the stream at this many PublishResponses/s (default: flat out)")
    ap.add_argument("--uatap", default=str(ROOT / "target" / "release" / "uatap"))
    ap.add_argument("--workdir", default="/tmp/uatap-e2e",
                    help="event files and recordings go here (deleted after each run)")
    ap.add_argument("--keep", action="store_true", help="keep event files and recordings")
    ap.add_argument("--out", default=str(HERE / "target" / "e2e-results"),
                    help="writes OUT.txt (table) and OUT.json (every run)")
    ap.add_argument("--report", metavar="JSON", help="only print the table of a saved OUT.json")
    a = ap.parse_args()
    if a.report:
        text, ok = report(json.loads(Path(a.report).read_text()))
        print(text)
        return 0 if ok else 2
    workloads = [w for w in a.workloads.split(",") if w]

    if not a.no_build:
        log("== building benches/e2e (release)")
        subprocess.run(["cargo", "build", "--release", "--quiet",
                        "--manifest-path", str(HERE / "Cargo.toml")], check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))

    b = Bench(a)
    # A private copy: the workspace may be rebuilt while the benchmark runs.
    shutil.copy2(a.uatap, b.uatap)
    cands = ["fwd", "uatap", "uatap+rec", "uatap+rec1"] + ([] if a.no_aa else ["fwd2"])
    if a.candidates:
        wanted = a.candidates.split(",")
        cands = ["fwd"] + [c for c in cands if c in wanted and c != "fwd"]
    results = {w: {c: [] for c in cands} for w in workloads}
    load_start = loadavg()
    t_start = time.time()
    idle = {}
    lossless = {}
    try:
        b.start_servers()
        for rnd in range(a.rounds):
            for w in workloads:
                k = rnd % len(cands)
                order = cands[k:] + cands[:k]
                for c in order:
                    r = b.run_one(w, c, rnd)
                    results[w][c].append(r)
                    if w == "stream":
                        extra = f"{r['mb_per_s']:8.1f} MB/s"
                    else:
                        extra = f"p50 {r['p50_us']:8.1f} us  p99 {r['p99_us']:8.1f} us  {r['rate']:7.0f}/s"
                    if "analysed" in r:
                        extra += f"  analysed {100 * r['analysed']:.1f}%"
                    log(f"round {rnd + 1}/{a.rounds} {w:6s} {c:9s} {extra}  "
                        f"proxy cpu {r['proxy_cpu_s']:.2f}s  load {r['load1']:.2f}")
        if a.lossless_steps and "stream" in workloads:
            fwd_mps = med([r["msgs_per_s"] for r in results["stream"]["fwd"]])
            for c in ("uatap", "uatap+rec", "uatap+rec1"):
                if c in cands:
                    lossless[c] = b.lossless_search(c, fwd_mps, a.lossless_steps, 3.0)
        if not a.no_idle:
            for c in ("fwd", "uatap"):
                for hs in (True, False):
                    key = f"{c}/{'hel_opn' if hs else 'raw'}"
                    idle[key] = b.idle_memory(c, hs)
                    log(f"idle {c:5s} {'HEL+OPN' if hs else 'raw TCP'}: "
                        f"{idle[key]['per_conn_kib']:.1f} KiB/conn")
    finally:
        b.cleanup()
    data = {
        "args": vars(a), "cpus": os.cpu_count(), "load_start": load_start, "load_end": loadavg(),
        "took_s": time.time() - t_start, "results": results, "lossless": lossless, "idle": idle,
    }
    outp = Path(a.out)
    outp.parent.mkdir(parents=True, exist_ok=True)
    outp.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    text, ok = report(data)
    print(text)
    outp.with_suffix(".txt").write_text(text + "\n")
    log(f"written: {outp.with_suffix('.txt')} and .json")
    return 0 if ok else 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, subprocess.SubprocessError) as e:
        log(f"error: {e}")
        sys.exit(1)
