#!/usr/bin/env python3
"""Makes a self-signed OPC UA application certificate with chosen validity dates, for the
reject tests (tests/rejects.rs): a client certificate that expired, or is not valid yet.

    make_cert.py OUT_DIR --app-uri URI [--not-before-days D] [--not-after-days D] [--cn NAME]

Writes OUT_DIR/cert.der and OUT_DIR/key.pem (2048-bit RSA, SHA-256, the key usages an OPC UA
application certificate needs: digitalSignature, nonRepudiation, keyEncipherment,
dataEncipherment, keyCertSign; clientAuth and serverAuth; the ApplicationUri and the host name in
the SubjectAltName). The dates are days relative to now (negative: in the past); the defaults
make a certificate that expired yesterday: valid from 400 days ago to 1 day ago. Prints
"CERT <path> not_before <RFC 3339> not_after <RFC 3339>".
"""

import argparse
import datetime
import socket
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--app-uri", required=True)
    p.add_argument("--not-before-days", type=float, default=-400)
    p.add_argument("--not-after-days", type=float, default=-1)
    p.add_argument("--cn", default="uatap reject test client")
    args = p.parse_args()
    if args.not_after_days <= args.not_before_days:
        p.error("--not-after-days must come after --not-before-days")

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    not_before = now + datetime.timedelta(days=args.not_before_days)
    not_after = now + datetime.timedelta(days=args.not_after_days)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, args.cn),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "uatap"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=True, key_encipherment=True,
                data_encipherment=True, key_agreement=False, key_cert_sign=True, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([
                x509.UniformResourceIdentifier(args.app_uri),
                x509.DNSName(socket.gethostname()),
            ]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cert.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (args.out / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    print(f"CERT {args.out / 'cert.der'} not_before {not_before.isoformat()} not_after {not_after.isoformat()}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
