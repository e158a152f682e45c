#!/usr/bin/env python3
"""Check the chunk layout of a secured OPC UA capture with the peers' own keys.

Usage: secure_check.py FILE.pcapng PORT --pki DIR [--chunks] [--keys]

For captures recorded by capture.py with --security and --pki DIR (the private keys of both
peers are in DIR: asyncua-*/key.pem, node-*/pki/own/private/private_key.pem). tshark extracts
the TCP payload of the first connection to 127.0.0.1:PORT; then, per direction:

- OPN chunks: the asymmetric part is decrypted with the receiver's private key (found by the
  ReceiverCertificateThumbprint) and its RSA signature checked with the SenderCertificate; the
  padding (PaddingSize byte + PaddingSize bytes) is checked; the nonces are taken from the
  OpenSecureChannelRequest/Response.
- MSG/CLO chunks: the symmetric keys are derived from the nonces (Part 6, 6.7.5: the sender's
  keys are P_SHA256(receiver nonce, sender nonce), 32-byte signing key, 32-byte AES key, 16-byte
  IV). SignAndEncrypt: everything after the 16-byte header + security header is AES-256-CBC
  decrypted first. Then the HMAC-SHA256 over the chunk minus its last 32 bytes must equal the
  last 32 bytes, and the body (after the 24-byte header) must decode with asyncua's decoder
  (single-chunk messages) exactly up to the padding (SignAndEncrypt) or the signature (Sign).

Prints one summary line per direction, plus one line per chunk with --chunks and the nonces
and derived symmetric keys (hex) with --keys. Exit 0 when every signature verifies and every
body decodes, 1 otherwise. Supports Basic256Sha256 and Aes256_Sha256_RsaPss (and
Aes128_Sha256_RsaOaep), Sign and SignAndEncrypt, one security token.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.crypto import uacrypto
from asyncua.ua import ua_binary
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

POLICIES = {
    # uri fragment: (asymmetric encryption hash, asymmetric signature, symmetric key sizes)
    "Basic256Sha256": (hashes.SHA1, "pkcs1v15", (32, 32, 16)),
    "Aes128_Sha256_RsaOaep": (hashes.SHA1, "pkcs1v15", (32, 16, 16)),
    "Aes256_Sha256_RsaPss": (hashes.SHA256, "pss", (32, 32, 16)),
}


def tcp_streams(path: Path, port: int) -> tuple[bytes, bytes]:
    """(client->server, server->client) bytes of the first TCP connection on port."""
    tshark = os.environ.get("UATAP_TSHARK", "tshark")
    out = subprocess.run(
        [tshark, "-r", str(path), "-Y", f"tcp.port=={port} && tcp.len>0 && tcp.stream==0",
         "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.payload"],
        capture_output=True, check=True, text=True).stdout
    c2s, s2c = bytearray(), bytearray()
    for line in out.splitlines():
        src, payload = line.split("\t")
        (s2c if int(src) == port else c2s).extend(bytes.fromhex(payload.replace(":", "")))
    return bytes(c2s), bytes(s2c)


def chunks(stream: bytes):
    at = 0
    while at + 8 <= len(stream):
        size = struct.unpack_from("<I", stream, at + 4)[0]
        yield stream[at:at + size]
        at += size


def load_keys(pki: Path) -> dict[bytes, object]:
    """SHA-1 thumbprint of each certificate in pki -> its private key (matched by modulus)."""
    keys, certs = [], []
    for f in pki.rglob("*"):
        if not f.is_file() or f.suffix not in (".pem", ".der"):
            continue
        data = f.read_bytes()
        for loader in (lambda d: serialization.load_pem_private_key(d, None),
                       lambda d: serialization.load_der_private_key(d, None)):
            try:
                keys.append(loader(data))
                break
            except Exception:  # noqa: BLE001 - not a key in that format
                pass
        for loader in (x509.load_pem_x509_certificate, x509.load_der_x509_certificate):
            try:
                certs.append(loader(data))
                break
            except Exception:  # noqa: BLE001
                pass
    by_thumb = {}
    for cert in certs:
        n = cert.public_key().public_numbers().n
        for k in keys:
            if k.private_numbers().public_numbers.n == n:
                by_thumb[hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest()] = k
    return by_thumb


def read_bytestring(buf: bytes, at: int) -> tuple[bytes | None, int]:
    n = struct.unpack_from("<i", buf, at)[0]
    at += 4
    if n < 0:
        return None, at
    return buf[at:at + n], at + n


def decode_body(body: bytes):
    """(service object, bytes left over) for a message body (type NodeId + encoded service)."""
    b = Buffer(body)
    typeid = ua_binary.nodeid_from_binary(b)
    cls = ua.extension_objects_by_typeid[typeid]
    if "TypeId" in getattr(cls, "__dataclass_fields__", {}):
        b = Buffer(body)  # asyncua's service classes decode their TypeId themselves
    obj = ua_binary.struct_from_binary(cls, b)
    return obj, len(b)


def check_padding(plain: bytes) -> tuple[int, bool]:
    """plain ends with PaddingSize byte after PaddingSize padding bytes (all = PaddingSize)."""
    n = plain[-1]
    return n, all(x == n for x in plain[-1 - n:])


class Direction:
    def __init__(self, name: str) -> None:
        self.name = name
        self.types = Counter()
        self.bad: list[str] = []
        self.sig_ok = 0
        self.paddings = Counter()
        self.services = Counter()
        self.notif_seqs: list[int] = []
        self.keys = None  # (sigkey, enckey, iv) of this sender


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("capture", type=Path)
    p.add_argument("port", type=int)
    p.add_argument("--pki", type=Path, required=True)
    p.add_argument("--chunks", action="store_true", help="one line per chunk")
    p.add_argument("--keys", action="store_true", help="print the nonces and the derived symmetric keys")
    args = p.parse_args()

    keys = load_keys(args.pki)
    c2s, s2c = tcp_streams(args.capture, args.port)
    dirs = {"c2s": Direction("c2s"), "s2c": Direction("s2c")}
    streams = {"c2s": list(chunks(c2s)), "s2c": list(chunks(s2c))}
    policy = mode = None
    nonces = {}

    # 1. OPN chunks of both directions first: nonces, then keys.
    for dname, cks in streams.items():
        d = dirs[dname]
        for ck in cks:
            if ck[:3] != b"OPN":
                continue
            at = 12
            uri, at = read_bytestring(ck, at)
            sender_cert, at = read_bytestring(ck, at)
            thumb, at = read_bytestring(ck, at)
            policy = uri.decode().rsplit("#", 1)[1]
            if policy not in POLICIES:
                print(f"{dname}: OPN policy {policy} not supported by this check")
                return 1
            oaep_hash, sig_kind, _ = POLICIES[policy]
            priv = keys.get(thumb)
            if priv is None:
                d.bad.append(f"OPN: no private key in {args.pki} for receiver thumbprint {thumb.hex()}")
                continue
            bs = priv.key_size // 8
            enc = ck[at:]
            plain = b"".join(
                priv.decrypt(enc[i:i + bs], rsa_padding.OAEP(rsa_padding.MGF1(oaep_hash()), oaep_hash(), None))
                for i in range(0, len(enc), bs))
            cert = x509.load_der_x509_certificate(sender_cert)
            siglen = cert.public_key().key_size // 8
            signed, sig = ck[:at] + plain[:-siglen], plain[-siglen:]
            pad = (rsa_padding.PKCS1v15() if sig_kind == "pkcs1v15" else
                   rsa_padding.PSS(rsa_padding.MGF1(hashes.SHA256()), 32))
            try:
                cert.public_key().verify(sig, signed, pad, hashes.SHA256())
                d.sig_ok += 1
            except Exception:  # noqa: BLE001
                d.bad.append("OPN: RSA signature does not verify")
            npad, pad_ok = check_padding(plain[:-siglen])
            if not pad_ok:
                d.bad.append(f"OPN: bad padding {plain[-siglen - 1 - npad:-siglen].hex()}")
            body = plain[8:-siglen - 1 - npad]
            obj, left = decode_body(body)
            if left:
                d.bad.append(f"OPN: {left} bytes left after {type(obj).__name__}")
            d.types["OPN"] += 1
            d.paddings[f"OPN:{npad + 1}"] += 1
            d.services[type(obj).__name__] += 1
            if isinstance(obj, ua.OpenSecureChannelRequest):
                nonces["client"] = obj.Parameters.ClientNonce
                mode = obj.Parameters.SecurityMode
            else:
                nonces["server"] = obj.Parameters.ServerNonce
            if args.chunks:
                print(f"{dname} OPN size {len(ck)} asym-encrypted {len(enc)} -> seq+body {8 + len(body)} "
                      f"padding {npad + 1} rsa-signature {siglen} {type(obj).__name__}")
    if "client" not in nonces or "server" not in nonces or mode is None:
        print("no complete OPN exchange found")
        return 1
    sizes = POLICIES[policy][2]
    dirs["c2s"].keys = uacrypto.p_sha256(nonces["server"], nonces["client"], sizes)
    dirs["s2c"].keys = uacrypto.p_sha256(nonces["client"], nonces["server"], sizes)
    encrypted = mode == ua.MessageSecurityMode.SignAndEncrypt
    if args.keys:
        print(f"client nonce {nonces['client'].hex()}")
        print(f"server nonce {nonces['server'].hex()}")
        for d in dirs.values():
            sigkey, enckey, iv = d.keys
            print(f"{d.name} (sender {'client' if d.name == 'c2s' else 'server'}) keys: signing {sigkey.hex()} "
                  f"encrypting {enckey.hex()} iv {iv.hex()}")

    # 2. MSG / CLO chunks.
    for dname, cks in streams.items():
        d = dirs[dname]
        sigkey, enckey, iv = d.keys
        for i, ck in enumerate(cks):
            kind = ck[:3].decode()
            if kind not in ("MSG", "CLO"):
                continue
            d.types[f"{kind}/{chr(ck[3])}"] += 1
            if encrypted:
                dec = Cipher(algorithms.AES(enckey), modes.CBC(iv)).decryptor()
                plain = ck[:16] + dec.update(ck[16:]) + dec.finalize()
            else:
                plain = ck
            mac = hmac.new(sigkey, plain[:-32], hashlib.sha256).digest()
            if mac == plain[-32:]:
                d.sig_ok += 1
            else:
                d.bad.append(f"chunk {i} {kind}: HMAC-SHA256 does not verify")
            end = len(plain) - 32
            npad = 0
            if encrypted:
                n, ok = check_padding(plain[:end])
                if not ok:
                    d.bad.append(f"chunk {i}: bad padding")
                npad = n + 1
                end -= npad
            d.paddings[npad] += 1
            body = plain[24:end]
            desc = ""
            if ck[3:4] == b"F":
                try:
                    obj, left = decode_body(body)
                except Exception as exc:  # noqa: BLE001
                    d.bad.append(f"chunk {i} {kind}: body does not decode: {exc!r}")
                    continue
                if left:
                    d.bad.append(f"chunk {i} {kind}: {left} bytes left after {type(obj).__name__}")
                name = type(obj).__name__
                d.services[name] += 1
                if isinstance(obj, ua.PublishResponse):
                    d.notif_seqs.append(obj.Parameters.NotificationMessage.SequenceNumber)
                desc = f"{name} body[:4]={body[:4].hex(' ')}"
            if args.chunks:
                print(f"{dname} {kind}/{chr(ck[3])} size {len(ck)} seq {struct.unpack_from('<I', plain, 16)[0]}: "
                      f"header 24, body {len(body)}, padding {npad}, hmac 32 {'ok' if mac == plain[-32:] else 'BAD'}"
                      f" {desc}")

    print(f"policy {policy} mode {mode.name} (keys derived from the OPN nonces)")
    rc = 0
    for d in dirs.values():
        total = sum(d.types.values())
        pads = ", ".join(f"{k}: {v}" for k, v in sorted(d.paddings.items(), key=str))
        seqs = f" notification seqs {d.notif_seqs[0]}..{d.notif_seqs[-1]} ({len(d.notif_seqs)})" if d.notif_seqs else ""
        print(f"{d.name}: chunks {dict(d.types)}; signatures ok {d.sig_ok}/{total}; "
              f"padding bytes per chunk {{{pads}}}; services {dict(d.services)}{seqs}")
        for b in d.bad:
            print(f"  BAD {b}")
        if d.bad or d.sig_ok != total:
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
