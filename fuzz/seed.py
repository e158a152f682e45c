#!/usr/bin/env python3
"""Seed the fuzz corpora from the captures in fixtures/*.pcapng (python3 stdlib + tshark).

    python3 fuzz/seed.py [--fixtures DIR] [--out DIR]

Adds seeds to fuzz/corpus/<target>/, keeping what fuzzing found (the corpora are git-ignored):
  chunk       one file per UA TCP chunk (split on the MessageSize at offset 4)
  message     service message bodies: MSG/CLO bodies after the 24-byte header, OPN bodies after
              the asymmetric security header; multi-chunk messages (C ... F) are joined
  reassembly  `(u8 split_seed, u16 chunk_limit, Vec<u8> data)` as the `arbitrary` crate reads
              it, data = a direction's stream (big streams cut into windows on chunk boundaries),
              and the same stream re-chunked into small chunks (multi-chunk messages)
  connection  `Vec<(bool to_server, Vec<u8>)>`: the capture's TCP segments in order
  capture     the capture files themselves (those up to 256 KiB)
  redact      the same capture files
  config      proxy configuration files (TOML)
  admin       `(Vec<u8>, Vec<u8>)`: two admin API requests (HTTP head + JSON body)
  mitm        like connection: both sides of a conversation, into the MITM bridge
  decrypt     like connection, into an analysis holding the fixtures' private keys
"""

import argparse
import hashlib
import shutil
import struct
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Caps keep libFuzzer's default max_len (the largest seed) small enough for fast runs.
MAX_SEED = 64 * 1024  # chunk and message seeds over this are left out
MAX_STREAM = 32 * 1024  # raw bytes per reassembly seed
MAX_CONN = 64 * 1024  # encoded bytes per connection seed


def segments(pcap):
    """[(stream, srcport, dstport, payload)] in capture order, payload-carrying segments only."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", "-e", "tcp.stream", "-e", "tcp.srcport",
         "-e", "tcp.dstport", "-e", "tcp.payload"],
        check=True, capture_output=True, text=True).stdout
    segs = []
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) < 4 or not f[3]:
            continue
        segs.append((int(f[0]), int(f[1]), int(f[2]), bytes.fromhex(f[3].replace(":", ""))))
    return segs


def split_chunks(stream):
    """Whole UA chunks of a stream; a trailing partial chunk is dropped."""
    chunks, i = [], 0
    while i + 8 <= len(stream):
        size = struct.unpack_from("<I", stream, i + 4)[0]
        if size < 8 or i + size > len(stream):
            break
        chunks.append(stream[i:i + size])
        i += size
    return chunks


def opn_body_offset(chunk):
    """Offset of the sequence header's end in an OPN chunk (None policy: plain text)."""
    i = 12  # header + SecureChannelId
    for _ in range(3):  # policy uri, sender certificate, receiver thumbprint
        n = struct.unpack_from("<i", chunk, i)[0]
        i += 4 + max(n, 0)
    return i + 8  # SequenceNumber + RequestId


def message_bodies(chunks):
    """Bodies of MSG/OPN/CLO messages, multi-chunk ones joined; aborted ones dropped."""
    partial = {}
    for c in chunks:
        kind, final = c[:3], c[3:4]
        try:
            if kind == b"OPN":
                start = opn_body_offset(c)
            elif kind in (b"MSG", b"CLO"):
                start = 24
            else:
                continue
            if start > len(c):
                continue
            req = struct.unpack_from("<I", c, start - 4)[0]
        except struct.error:
            continue
        if final == b"C":
            partial.setdefault(req, []).append(c[start:])
        elif final == b"F":
            yield b"".join(partial.pop(req, [])) + c[start:]
        else:
            partial.pop(req, None)


def rechunk(chunks, body_max):
    """The same messages sent as MSG chunks of at most `body_max` body bytes, with the sequence
    numbers renumbered; other chunks are kept (with the new sequence numbers)."""
    out, partial, seq = [], {}, None
    for c in chunks:
        kind, final = c[:3], c[3:4]
        if kind not in (b"MSG", b"OPN", b"CLO") or len(c) < 24:
            out.append(c)
            continue
        try:
            start = opn_body_offset(c) if kind == b"OPN" else 24
            seq_at = start - 8
            cur_seq, req = struct.unpack_from("<II", c, seq_at)
        except struct.error:
            out.append(c)
            continue
        if seq is None:
            seq = cur_seq
        if kind != b"MSG" or final not in (b"C", b"F"):
            out.append(c[:seq_at] + struct.pack("<I", seq) + c[seq_at + 4:])
            seq += 1
            continue
        partial.setdefault(req, []).append(c[start:])
        if final == b"C":
            continue
        body = b"".join(partial.pop(req))
        pieces = [body[i:i + body_max] for i in range(0, len(body), body_max)] or [b""]
        for i, piece in enumerate(pieces):
            flag = b"F" if i == len(pieces) - 1 else b"C"
            out.append(b"MSG" + flag + struct.pack("<I", 24 + len(piece)) + c[8:16]
                       + struct.pack("<II", seq, req) + piece)
            seq += 1
    return out


def windows(chunks, cap):
    """Consecutive runs of chunks of at most `cap` bytes; a bigger chunk is cut to `cap`."""
    cur = b""
    for c in chunks:
        if cur and len(cur) + len(c) > cap:
            yield cur
            cur = b""
        cur += c[:cap]
    if cur:
        yield cur


def arb_bytes(data, take_rest=False):
    """`Vec<u8>` as `arbitrary` 1.x decodes it: each byte after a 'keep going' byte (odd),
    then a stop byte (even), which take_rest may leave out."""
    out = bytearray(2 * len(data) + 1)
    out[0:2 * len(data):2] = b"\x01" * len(data)
    out[1:2 * len(data):2] = data
    return bytes(out if not take_rest else out[:-1])


def reassembly_seed(split_seed, chunk_limit, data):
    return struct.pack("<BH", split_seed, chunk_limit) + arb_bytes(data, take_rest=True)


def connection_seed(segs):
    """`Vec<(bool, Vec<u8>)>` (take_rest): per element keep-going, direction, bytes."""
    out = bytearray()
    for to_server, payload in segs:
        item = b"\x01" + (b"\x01" if to_server else b"\x00") + arb_bytes(payload)
        if out and len(out) + len(item) > MAX_CONN:
            break
        out += item
    return bytes(out)


class Corpus:
    def __init__(self, root, name, limit=None):
        self.limit = limit
        self.dir = root / name
        # Seeds are added beside what fuzzing already found, which is kept.
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def add(self, data):
        if not data or (self.limit and len(data) > self.limit):
            return
        p = self.dir / hashlib.sha1(data).hexdigest()
        if not p.exists():
            p.write_bytes(data)
            self.n += 1


FAULT_EXAMPLES = [
    "cut at 10s",
    "reset after ActivateSessionResponse",
    "cut after PublishResponse seq=120 conn 3",
    "blackhole s2c after 5s for 30s",
    "latency 200ms jitter 50ms c2s",
    "bandwidth 10kB/s s2c",
    "drop-message PublishResponse x3 after 5s",
    "refuse x2",
    "err Bad_TcpServerTooBusy",
    "reject next OPN with Bad_SecurityChecksFailed",
    "slow-close 2s",
    '[[listener]]\nlisten = "0.0.0.0:4841"\nupstream = "opc.tcp://kepware:49320"\n'
    'faults = ["cut at 60s"]\n',
]

CONFIG_EXAMPLES = [
    'json_file = "events.jsonl"\nmetrics = "127.0.0.1:9464"\nadmin = "127.0.0.1:9465"\n'
    'record = "line4.pcapng"\n\n[[listener]]\nname = "kepware-1"\nlisten = "0.0.0.0:4841"\n'
    'upstream = "opc.tcp://kepware:49320"\nconnect_timeout = "5s"\nfaults = ["cut at 60s"]\n\n'
    '[[listener]]\nlisten = "0.0.0.0:4842"\nupstream = "10.0.0.7:4840"\n',
    '[[listener]]\nlisten = "127.0.0.1:4841"\nupstream = "127.0.0.1:4840"\n',
]


def http(method, path, body=""):
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n{body}"


ADMIN_EXAMPLES = [
    (http("POST", "/faults", '{"spec": "cut after PublishResponse seq=12", "conn": 4}'),
     http("GET", "/faults")),
    (http("POST", "/faults", '{"spec": "latency 200ms s2c"}'), http("DELETE", "/faults/1")),
    (http("GET", "/connections"), http("PUT", "/faults", "{}")),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", type=Path, default=ROOT / "fixtures")
    ap.add_argument("--out", type=Path, default=ROOT / "fuzz" / "corpus")
    args = ap.parse_args()

    captures = sorted(args.fixtures.glob("*.pcapng"))
    if not captures:
        sys.exit(f"no captures in {args.fixtures}")
    corpora = {n: Corpus(args.out, n, MAX_SEED if n in ("chunk", "message") else None)
               for n in ("chunk", "message", "reassembly", "connection", "fault_stream",
                         "fault_spec", "capture", "config", "admin", "mitm", "decrypt",
                         "redact")}
    for text in CONFIG_EXAMPLES:
        corpora["config"].add(text.encode())
    for a, b in ADMIN_EXAMPLES:
        corpora["admin"].add(arb_bytes(a.encode()) + arb_bytes(b.encode(), take_rest=True))
    # The fault language: the README's examples and a config file.
    for line in FAULT_EXAMPLES:
        corpora["fault_spec"].add(line.encode())

    for pcap in captures:
        if pcap.stat().st_size <= 256 * 1024:
            corpora["capture"].add(pcap.read_bytes())
            corpora["redact"].add(pcap.read_bytes())
        conns = OrderedDict()  # tcp.stream -> [(srcport, dstport, payload)]
        for stream, sport, dport, payload in segments(pcap):
            conns.setdefault(stream, []).append((sport, dport, payload))
        for segs in conns.values():
            # The client speaks first (HEL); its port tells the directions apart.
            client = segs[0][0]
            directions = OrderedDict()
            for sport, _, payload in segs:
                directions.setdefault(sport, bytearray()).extend(payload)
            for sport, stream in directions.items():
                chunks = split_chunks(bytes(stream))
                for c in chunks:
                    corpora["chunk"].add(c)
                for body in message_bodies(chunks):
                    corpora["message"].add(body)
                for i, w in enumerate(windows(chunks, MAX_STREAM)):
                    # Allow any chunk size, then a small limit on the first window so the
                    # limit errors are covered too.
                    corpora["reassembly"].add(reassembly_seed(i % 13, 0xFFFF, w))
                    if i == 0:
                        corpora["reassembly"].add(reassembly_seed(3, 1024, w))
                for i, w in enumerate(windows(chunks, MAX_STREAM)):
                    # Control byte (piece size, holding pattern, verdicts), then the stream.
                    corpora["fault_stream"].add(bytes([(i * 37 + 11) % 256]) + w)
                for i, w in enumerate(windows(rechunk(chunks, 1000), MAX_STREAM)):
                    corpora["reassembly"].add(reassembly_seed(i % 13, 0xFFFF, w))
            seed = connection_seed([(sport == client, p) for sport, _, p in segs])
            corpora["connection"].add(seed)
            corpora["mitm"].add(seed)
            corpora["decrypt"].add(seed)

    for name, c in corpora.items():
        print(f"{name}: {c.n} seeds in {c.dir}")


if __name__ == "__main__":
    main()
