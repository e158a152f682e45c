#!/usr/bin/env python3
"""End-to-end speed of `uatap analyze --json` against tshark's OPC UA dissector.

1. Builds (or reuses) a ~72 MB pcapng of Publish traffic under target/bench-data/: the
   connection in fixtures/basic-none.pcapng (small single-item PublishResponses) replayed many
   times, plus a few copies of fixtures/big-publish.pcapng (multi-chunk PublishResponses, 2,000
   items). Every copy is its own TCP connection (fresh client port, and a fresh client address
   after 40,000 ports), copies start staggered so ~125 connections overlap, and the packets of
   all copies are merged in timestamp order. Each copy also gets what a real server/client
   would give it: its own AuthenticationToken, SessionId and SubscriptionId (uatap follows
   sessions and subscriptions across connections) and an OPN RequestHeader timestamp on its own
   clock (uatap pairs connections with identical HEL+OPN bytes as the two legs of a proxy).
   Values keep their length, so the fixture's TCP sequence numbers stay valid; IPv4 and TCP
   checksums are recomputed (incrementally from the fixture's bytes).
2. Times, in one run, interleaved rounds (uatap, tshark, uatap, tshark, ...):
     target/release/uatap analyze FILE --json > /dev/null
     tshark -r FILE -d tcp.port==48401,opcua -d tcp.port==48407,opcua -Y opcua > /dev/null
   after an untimed warm-up round whose output is kept to check that both tools did the work
   (uatap: "kind":"publish" events, summaries, OPC UA messages and the count of every event kind
   must equal the fixtures' own x copies; tshark: its OPC UA lines, likewise).
3. Prints a result table and writes it to target/bench-data/analyze_vs_tshark.txt.

Usage: python3 benches/analyze_vs_tshark.py [--rounds 3] [--target-mb 72] [--regen] [--no-build]
       make bench-analyze
Exit status: 0 when the checks pass and uatap is at least --min-ratio (10) times faster,
1 when a check fails, 2 when the ratio bar is missed.
"""

import argparse
import hashlib
import heapq
import json
import os
import re
import resource
import statistics
import struct
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "target" / "bench-data"
GEN_VERSION = 4

# Fixtures replayed, with their server port and what one copy holds (checked against uatap and
# tshark 4.0.17 on the fixture itself before generating; see fixtures/*.md).
SMALL = ("basic-none.pcapng", 48401)
BIG = ("big-publish.pcapng", 48407)

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 0x00000001
PCAPNG_EPB = 0x00000006
PCAPNG_SPB = 0x00000003
LINKTYPE_ETHERNET = 1


# ----------------------------------------------------------------------------------------------
# pcapng reading / writing (little-endian files as written by tshark/dumpcap on x86)


def read_pcapng(path):
    """Return [(ts_ns, frame_bytes)] for an Ethernet pcapng with one or more interfaces."""
    data = path.read_bytes()
    pos = 0
    endian = "<"
    ifaces = []  # (linktype, ns per tick)
    out = []
    while pos + 12 <= len(data):
        btype = struct.unpack_from(endian + "I", data, pos)[0]
        if btype == PCAPNG_SHB:
            bom = data[pos + 8:pos + 12]
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        blen = struct.unpack_from(endian + "I", data, pos + 4)[0]
        body = data[pos + 8:pos + blen - 4]
        if btype == PCAPNG_IDB:
            linktype = struct.unpack_from(endian + "H", body, 0)[0]
            tsres = 6
            opt = 8
            while opt + 4 <= len(body):
                code, olen = struct.unpack_from(endian + "HH", body, opt)
                if code == 0:
                    break
                if code == 9 and olen >= 1:
                    tsres = body[opt + 4]
                opt += 4 + ((olen + 3) & ~3)
            if tsres & 0x80:
                raise SystemExit(f"{path}: power-of-two if_tsresol not supported")
            ifaces.append((linktype, 10 ** (9 - tsres) if tsres <= 9 else None, tsres))
        elif btype == PCAPNG_EPB:
            iface, ts_hi, ts_lo, caplen, _origlen = struct.unpack_from(endian + "IIIII", body, 0)
            linktype, mult, tsres = ifaces[iface]
            if linktype != LINKTYPE_ETHERNET:
                raise SystemExit(f"{path}: linktype {linktype}, only Ethernet is supported")
            ticks = (ts_hi << 32) | ts_lo
            ts_ns = ticks * mult if mult is not None else ticks // 10 ** (tsres - 9)
            out.append((ts_ns, bytes(body[20:20 + caplen])))
        pos += blen
    return out


def pcapng_header():
    opts = b""
    app = b"uatap benches/analyze_vs_tshark.py"
    opts += struct.pack("<HH", 4, len(app)) + app + b"\x00" * ((-len(app)) & 3)  # shb_userappl
    opts += struct.pack("<HH", 0, 0)
    shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + opts
    shb = struct.pack("<II", PCAPNG_SHB, 12 + len(shb_body)) + shb_body
    shb += struct.pack("<I", 12 + len(shb_body))
    # One Ethernet interface, nanosecond timestamps (if_tsresol = 9).
    idb_opts = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
    idb_body = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 0) + idb_opts
    idb = struct.pack("<II", PCAPNG_IDB, 12 + len(idb_body)) + idb_body
    idb += struct.pack("<I", 12 + len(idb_body))
    return shb + idb


def epb(ts_ns, frame):
    pad = (-len(frame)) & 3
    blen = 32 + len(frame) + pad
    return b"".join((
        struct.pack("<IIIIIII", PCAPNG_EPB, blen, 0, ts_ns >> 32, ts_ns & 0xFFFFFFFF,
                    len(frame), len(frame)),
        frame,
        b"\x00" * pad,
        struct.pack("<I", blen),
    ))


# ----------------------------------------------------------------------------------------------
# Packet templates: each fixture packet with the client's port/address made rewritable


def ones_sum(data):
    """Ones'-complement sum of 16-bit big-endian words, as a residue mod 0xFFFF."""
    if len(data) & 1:
        data = data + b"\x00"
    return int.from_bytes(data, "big") % 0xFFFF


def finish(residue):
    """Checksum field from a residue (0 residue means the folded sum is 0xFFFF)."""
    return 0xFFFF - (residue if residue else 0xFFFF)


# Per fixture: the identifiers a real server hands out per session, which uatap follows across
# connections (sessions by AuthenticationToken, subscriptions by server and SubscriptionId).
# Every copy gets its own values (same length, so TCP sequence numbers stay valid); copies that
# shared them would look like one session hopping between connections.
FIXTURE_IDS = {
    "basic-none.pcapng": {
        "subscription_id": 858880,
        "auth_token": "0447ed0415788fd37a935f0f83cdff2b",
        "session_guid": "a338cba5-b59f-eed5-69ba-21341c10fb16",
    },
    "big-publish.pcapng": {
        "subscription_id": 465373,
        "auth_token": "fe612afd15fb39c3ba8e29095a1bdc64",
        "session_guid": "39aa934f-39b9-5980-5c54-06d3d25969a9",
    },
}


def opn_timestamp_offset(chunk):
    """Offset of the RequestHeader.Timestamp in an OpenSecureChannelRequest chunk (security
    None), or None."""
    try:
        pos = 12
        for _ in range(3):  # SecurityPolicyUri, SenderCertificate, ReceiverThumbprint
            n = struct.unpack_from("<i", chunk, pos)[0]
            pos += 4 + max(n, 0)
        pos += 8  # SequenceNumber, RequestId
        pos += {0: 2, 1: 4, 2: 7}[chunk[pos]]  # type id NodeId
        pos += {0: 2, 1: 4, 2: 7}[chunk[pos]]  # RequestHeader.AuthenticationToken
    except (struct.error, KeyError, IndexError):
        return None
    return pos if pos + 8 <= len(chunk) else None


class Template:
    """One fixture packet with its variable bytes zeroed. `emit(port, ip, values)` returns it
    with the client's port and address and the per-copy identifier bytes filled in, and valid
    IPv4 and TCP checksums (base sums are precomputed; the variable parts are added)."""

    __slots__ = ("frame", "ts", "is_tcp", "to_server", "tcp", "data", "data_end", "seq",
                 "port_off", "ip_off", "ipsum_off", "ip_base", "tcpsum_off", "tcp_base",
                 "patches")

    def __init__(self, ts, frame, server_port):
        self.ts = ts
        self.frame = bytearray(frame)
        self.is_tcp = False
        self.patches = []  # (frame offset, field name, byte index in the field's value)
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
            return
        ip = 14
        ihl = (frame[ip] & 0x0F) * 4
        if frame[ip] >> 4 != 4 or frame[ip + 9] != 6:
            return
        total_len = struct.unpack_from(">H", frame, ip + 2)[0]
        tcp = ip + ihl
        sport, dport = struct.unpack_from(">HH", frame, tcp)
        if dport == server_port:
            self.port_off, self.ip_off = tcp, ip + 12          # client is the source
        elif sport == server_port:
            self.port_off, self.ip_off = tcp + 2, ip + 16      # client is the destination
        else:
            return
        if ip + total_len > len(frame):
            raise SystemExit("fixture packet is truncated (snaplen); cannot fix TCP checksum")
        self.is_tcp = True
        self.to_server = dport == server_port
        self.tcp = tcp
        self.data = tcp + (frame[tcp + 12] >> 4) * 4
        self.data_end = ip + total_len
        self.seq = struct.unpack_from(">I", frame, tcp + 4)[0]
        self.ipsum_off = ip + 10
        self.tcpsum_off = tcp + 16

    def seal(self):
        """Zero the variable bytes and precompute the checksum base sums."""
        if not self.is_tcp:
            return
        f = self.frame
        ip, tcp = 14, self.tcp
        for off, _name, _i in self.patches:
            f[off] = 0
        f[self.port_off:self.port_off + 2] = b"\x00\x00"
        f[self.ip_off:self.ip_off + 4] = b"\x00\x00\x00\x00"
        f[self.ipsum_off:self.ipsum_off + 2] = b"\x00\x00"
        self.ip_base = ones_sum(bytes(f[ip:tcp]))
        f[self.tcpsum_off:self.tcpsum_off + 2] = b"\x00\x00"
        seg_len = self.data_end - tcp
        pseudo = bytes(f[ip + 12:ip + 20]) + struct.pack(">BBH", 0, 6, seg_len)
        self.tcp_base = (ones_sum(pseudo) + ones_sum(bytes(f[tcp:self.data_end]))) % 0xFFFF
        # Byte at an even offset in the segment is the high byte of its 16-bit word.
        self.patches = [(off, name, i, 8 if (off - tcp) % 2 == 0 else 0)
                        for off, name, i in self.patches]

    def emit(self, port, ip, values):
        if not self.is_tcp:
            return bytes(self.frame)
        f = bytearray(self.frame)
        ipw = (ip >> 16) + (ip & 0xFFFF)
        tcp_sum = self.tcp_base + ipw + port
        for off, name, i, shift in self.patches:
            b = values[name][i]
            f[off] = b
            tcp_sum += b << shift
        f[self.port_off:self.port_off + 2] = port.to_bytes(2, "big")
        f[self.ip_off:self.ip_off + 4] = ip.to_bytes(4, "big")
        f[self.ipsum_off:self.ipsum_off + 2] = finish((self.ip_base + ipw) % 0xFFFF).to_bytes(2, "big")
        f[self.tcpsum_off:self.tcpsum_off + 2] = finish(tcp_sum % 0xFFFF).to_bytes(2, "big")
        return bytes(f)


class Fixture:
    """A fixture's packets as templates, and the per-copy identifier values."""

    def __init__(self, name, server_port):
        self.name = name
        self.server_port = server_port
        pkts = read_pcapng(ROOT / "fixtures" / name)
        self.t0 = pkts[0][0]
        self.templates = [Template(ts - self.t0, fr, server_port) for ts, fr in pkts]
        ids = FIXTURE_IDS[name]
        self.patterns = {
            "subscription_id": struct.pack("<I", ids["subscription_id"]),
            "auth_token": bytes.fromhex(ids["auth_token"]),
            "session_guid": uuid.UUID(ids["session_guid"]).bytes_le,
        }
        self.opn_ts = {}  # field name -> original DateTime of a client OPN request
        self.found = {k: 0 for k in self.patterns}
        for to_server in (True, False):
            self._scan(to_server)
        if not self.opn_ts:
            raise SystemExit(f"{name}: no client OpenSecureChannelRequest found to vary")
        for k, n in self.found.items():
            if n == 0:
                raise SystemExit(f"{name}: {k} {self.patterns[k].hex()} not found")
        for t in self.templates:
            t.seal()

    def _scan(self, to_server):
        """Find the identifiers in one direction's byte stream and mark them in the packets."""
        pkts = [t for t in self.templates if t.is_tcp and t.to_server == to_server
                and t.data_end > t.data]
        if not pkts:
            return
        isn = pkts[0].seq
        stream = bytearray()
        where = []  # (stream offset, template)
        for t in pkts:
            rel = (t.seq - isn) & 0xFFFFFFFF
            chunk = t.frame[t.data:t.data_end]
            if rel + len(chunk) > len(stream):
                stream.extend(bytes(rel + len(chunk) - len(stream)))
            stream[rel:rel + len(chunk)] = chunk
            where.append((rel, t))

        def mark(start, length, name):
            for rel, t in where:
                lo, hi = max(start, rel), min(start + length, rel + t.data_end - t.data)
                for s in range(lo, hi):
                    t.patches.append((t.data + s - rel, name, s - start))

        for name, pat in self.patterns.items():
            pos = stream.find(pat)
            while pos >= 0:
                mark(pos, len(pat), name)
                self.found[name] += 1
                pos = stream.find(pat, pos + len(pat))
        if to_server:  # client OPN requests: walk the chunks
            pos = 0
            while pos + 8 <= len(stream):
                size = struct.unpack_from("<I", stream, pos + 4)[0]
                if size < 8:
                    break
                if stream[pos:pos + 4] == b"OPNF":
                    off = opn_timestamp_offset(bytes(stream[pos:pos + size]))
                    if off is not None:
                        name = f"opn_ts{len(self.opn_ts)}"
                        self.opn_ts[name] = struct.unpack_from("<q", stream, pos + off)[0]
                        mark(pos + off, 8, name)
                pos += size

    def values(self, k, start_ns):
        """Identifier bytes for copy number k starting at start_ns."""
        dt_shift = (start_ns - self.t0) // 100  # OPC UA DateTime ticks are 100 ns
        v = {name: struct.pack("<q", orig + dt_shift) for name, orig in self.opn_ts.items()}
        sub = (FIXTURE_IDS[self.name]["subscription_id"] + k + 1) & 0xFFFFFFFF or 1
        v["subscription_id"] = struct.pack("<I", sub)
        for name in ("auth_token", "session_guid"):
            v[name] = hashlib.blake2b(self.patterns[name] + k.to_bytes(8, "little"),
                                      digest_size=16).digest()
        return v

    def wire_bytes(self):
        return sum(32 + len(t.frame) + ((-len(t.frame)) & 3) for t in self.templates)


def client_endpoint(i):
    """Copy i -> (client port, client IPv4 as int): 127.0.0.1:20000.. then 127.0.0.2:20000.. ..."""
    return 20000 + i % 40000, (127 << 24) | (1 + i // 40000)


def copy_stream(fixture, k, start_ns, port, ip):
    values = fixture.values(k, start_ns)
    for t in fixture.templates:
        yield (start_ns + t.ts, k, t, port, ip, values)


# ----------------------------------------------------------------------------------------------
# Per-copy expectations, measured on the fixtures themselves


def uatap_counts(uatap, path):
    out = subprocess.run([str(uatap), "analyze", str(path), "--json"], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    return count_uatap(out)


KIND_RE = re.compile(rb'"kind":"([a-z_]+)"')


def count_uatap(out):
    """Events per kind, plus the OPC UA message total from the summaries."""
    kinds = Counter(m.decode() for m in KIND_RE.findall(out))
    messages = 0
    for line in out.splitlines():
        if b'"kind":"summary"' in line:
            messages += json.loads(line).get("messages") or 0
    return {"kinds": dict(sorted(kinds.items())), "publish": kinds["publish"],
            "summary": kinds["summary"], "messages": messages, "lines": out.count(b"\n")}


def tshark_lines(path, ports):
    cmd = tshark_cmd(path, ports)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    return out.count(b"\n")


def tshark_cmd(path, ports):
    cmd = ["tshark", "-r", str(path)]
    for p in sorted(ports):
        cmd += ["-d", f"tcp.port=={p},opcua"]
    return cmd + ["-Y", "opcua"]


# ----------------------------------------------------------------------------------------------


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate(args, out_path, meta_path):
    small, big = Fixture(*SMALL), Fixture(*BIG)
    target = int(args.target_mb * 1e6)
    n_big = args.big_copies
    n_small = max(1, -(-(target - n_big * big.wire_bytes()) // small.wire_bytes()))
    copies = [(small, n_small), (big, n_big)]

    stagger = int(args.stagger_ms * 1e6)
    base = 1_795_000_000 * 10**9  # 2026-11-18, arbitrary
    span = n_small * stagger
    streams = []
    for i in range(n_small):
        port, ip = client_endpoint(i)
        streams.append(copy_stream(small, i, base + i * stagger, port, ip))
    for j in range(n_big):
        k = n_small + j
        port, ip = client_endpoint(k)
        streams.append(copy_stream(big, k, base + (j + 1) * span // (n_big + 1), port, ip))

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part")
    packets = 0
    t0 = time.perf_counter()
    with open(tmp, "wb", buffering=1 << 20) as f:
        f.write(pcapng_header())
        for ts, _k, t, port, ip, values in heapq.merge(*streams, key=lambda x: (x[0], x[1])):
            f.write(epb(ts, t.emit(port, ip, values)))
            packets += 1
    os.replace(tmp, out_path)
    gen_s = time.perf_counter() - t0

    meta = {
        "key": cache_key(args),
        "copies": {fx.name: n for fx, n in copies},
        "ids_found": {fx.name: fx.found for fx, _n in copies},
        "packets": packets,
        "connections": n_small + n_big,
        "server_ports": sorted({fx.server_port for fx, n in copies if n}),
        "size": out_path.stat().st_size,
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"generated {out_path} in {gen_s:.1f} s", flush=True)
    return meta


def expectations(uatap, meta):
    """What the generated capture must yield: each fixture's own uatap and tshark counts (run
    now, so they follow the current uatap) times its number of copies."""
    ports = dict((SMALL, BIG))
    exp = {"kinds": Counter(), "publish": 0, "messages": 0, "tshark_lines": 0}
    for name, n in meta["copies"].items():
        u = uatap_counts(uatap, ROOT / "fixtures" / name)
        exp["publish"] += u["publish"] * n
        exp["messages"] += u["messages"] * n
        exp["tshark_lines"] += tshark_lines(ROOT / "fixtures" / name, [ports[name]]) * n
        for kind, c in u["kinds"].items():
            exp["kinds"][kind] += c * n
    exp["kinds"] = dict(sorted(exp["kinds"].items()))
    return exp


def cache_key(args):
    return {
        "gen_version": GEN_VERSION,
        "target_mb": args.target_mb,
        "big_copies": args.big_copies,
        "stagger_ms": args.stagger_ms,
        "fixtures": {n: sha256(ROOT / "fixtures" / n) for n, _ in (SMALL, BIG)},
    }


def timed(cmd):
    """Wall-clock seconds and child CPU seconds of one run with stdout to /dev/null."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited with {p.returncode}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per tool (default 3)")
    ap.add_argument("--target-mb", type=float, default=72.0, help="capture size (default 72 MB)")
    ap.add_argument("--big-copies", type=int, default=4,
                    help="copies of big-publish.pcapng in the mix (default 4, ~8 MB)")
    ap.add_argument("--stagger-ms", type=float, default=25.0,
                    help="start-time offset between small copies (default 25 ms: ~125 overlap)")
    ap.add_argument("--regen", action="store_true", help="regenerate the capture")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--uatap", default=str(ROOT / "target" / "release" / "uatap"))
    ap.add_argument("--min-ratio", type=float, default=10.0, help="bar for tshark/uatap")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")

    uatap = Path(args.uatap)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "uatap"], cwd=ROOT,
                       check=True)
    if not uatap.exists():
        raise SystemExit(f"{uatap} not found (cargo build --release)")

    cap = DATA_DIR / "publish-mix.pcapng"
    meta_path = DATA_DIR / "publish-mix.json"
    meta = None
    if cap.exists() and meta_path.exists() and not args.regen:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != cache_key(args) or meta.get("size") != cap.stat().st_size:
            meta = None
        else:
            print(f"reusing {cap}", flush=True)
    if meta is None:
        meta = generate(args, cap, meta_path)

    size = cap.stat().st_size
    mb = size / 1e6
    ports = meta["server_ports"]
    exp = expectations(uatap, meta)
    u_cmd = [str(uatap), "analyze", str(cap), "--json"]
    t_cmd = tshark_cmd(cap, ports)

    # Warm-up round (page cache, untimed), its output kept for the sanity checks.
    print("warm-up + sanity checks ...", flush=True)
    u_out = subprocess.run(u_cmd, check=True, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL).stdout
    u = count_uatap(u_out)
    del u_out
    t_lines = tshark_lines(cap, ports)
    problems = []
    if u["publish"] != exp["publish"]:
        problems.append(f"uatap publish events {u['publish']} != expected {exp['publish']}")
    if u["kinds"] != exp["kinds"]:
        diff = {k: (u["kinds"].get(k, 0), exp["kinds"].get(k, 0))
                for k in sorted(set(u["kinds"]) | set(exp["kinds"]))
                if u["kinds"].get(k, 0) != exp["kinds"].get(k, 0)}
        problems.append(f"uatap events per kind differ from fixtures x copies "
                        f"(got, expected): {diff}")
    if u["summary"] != meta["connections"]:
        problems.append(f"uatap summaries {u['summary']} != connections {meta['connections']}")
    if u["messages"] != exp["messages"]:
        problems.append(f"uatap messages {u['messages']} != expected {exp['messages']}")
    if t_lines == 0:
        problems.append("tshark printed no OPC UA lines")
    elif t_lines != exp["tshark_lines"]:
        problems.append(f"tshark OPC UA lines {t_lines} != expected {exp['tshark_lines']}")

    load0 = os.getloadavg()[0]
    walls = {"uatap": [], "tshark": []}
    cpus = {"uatap": [], "tshark": []}
    for r in range(args.rounds):
        for name, cmd in (("uatap", u_cmd), ("tshark", t_cmd)):
            w, c = timed(cmd)
            walls[name].append(w)
            cpus[name].append(c)
            print(f"  round {r + 1}: {name:6s} {w:8.3f} s", flush=True)

    med = {k: statistics.median(v) for k, v in walls.items()}
    ratio = med["tshark"] / med["uatap"]
    cpu_med = {k: statistics.median(v) for k, v in cpus.items()}
    cpu_ratio = cpu_med["tshark"] / cpu_med["uatap"] if cpu_med["uatap"] else float("inf")
    copies = ", ".join(f"{n} x {k}" for k, n in meta["copies"].items())
    lines = [
        "uatap analyze --json vs tshark -Y opcua (wall clock, stdout > /dev/null)",
        f"date        {time.strftime('%Y-%m-%d %H:%M:%S %z')}   host CPUs: {os.cpu_count()}, "
        f"load average before/after: {load0:.2f} / {os.getloadavg()[0]:.2f}",
        f"capture     {cap.relative_to(ROOT)}",
        f"            {mb:.1f} MB ({size} bytes), {meta['packets']} packets, "
        f"{meta['connections']} TCP connections ({copies})",
        f"            {exp['messages']} OPC UA messages (uatap summaries), "
        f"{exp['publish']} PublishResponses, {exp['tshark_lines']} tshark OPC UA frames",
        f"checks      uatap: {u['publish']} publish events, {u['summary']} summaries, "
        f"{u['messages']} messages, {u['lines']} lines; tshark: {t_lines} lines "
        f"-> {'OK' if not problems else 'FAIL'}",
        f"tshark      {' '.join(t_cmd[:1] + ['-r', 'FILE'] + t_cmd[3:])}  ({subprocess.run(['tshark', '--version'], stdout=subprocess.PIPE, text=True).stdout.splitlines()[0]})",
        "",
        f"{'tool':8s} {'rounds':>6s} {'median s':>9s} {'min s':>8s} {'max s':>8s} "
        f"{'MB/s':>8s} {'msg/s':>10s} {'cpu s':>7s}",  # MB = 10^6 bytes; cpu = user+sys
    ]
    for name in ("uatap", "tshark"):
        w = walls[name]
        lines.append(f"{name:8s} {len(w):6d} {med[name]:9.3f} {min(w):8.3f} {max(w):8.3f} "
                     f"{mb / med[name]:8.1f} {exp['messages'] / med[name]:10.0f} "
                     f"{statistics.median(cpus[name]):7.2f}")
    lines += [
        "",
        f"ratio tshark/uatap (wall-clock medians): {ratio:.1f}x   (bar: >= {args.min_ratio:g}x -> "
        f"{'MET' if ratio >= args.min_ratio else 'MISSED'})",
        f"ratio tshark/uatap (CPU-time medians):   {cpu_ratio:.1f}x   (steadier on a busy host)",
        "rounds (s): " + "; ".join(f"{n}: " + " ".join(f"{x:.3f}" for x in walls[n])
                                  for n in ("uatap", "tshark")),
    ]
    lines += [f"PROBLEM: {p}" for p in problems]
    text = "\n".join(lines) + "\n"
    print()
    print(text, end="")
    (DATA_DIR / "analyze_vs_tshark.txt").write_text(text)
    print(f"(written to {(DATA_DIR / 'analyze_vs_tshark.txt').relative_to(ROOT)})")
    if problems:
        sys.exit(1)
    if ratio < args.min_ratio:
        sys.exit(2)


if __name__ == "__main__":
    main()
