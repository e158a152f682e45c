#!/usr/bin/env python3
"""asyncua OPC UA test server for uatap integration tests.

    ua_server.py --port N [--items K] [--period MS] [--duration S]
                 [--security POLICY:MODE] [--pki DIR] [--host ADDR]
                 [--max-sessions N] [--max-connections N] [--no-anonymous]
                 [--user NAME --password-env VAR]

Listens on --host only (default 127.0.0.1; IPv6 e.g. ::1); endpoint opc.tcp://HOST:N/UA/Test
(an IPv6 address in brackets: opc.tcp://[::1]:N/UA/Test), anonymous login allowed.
Address space (namespace 1, the server's own):

    ns=1;s=Counter   Int32, +1 every --period ms (default 100)
    ns=1;s=Item.<i>  Double, i = 0..K-1, all changed every --period ms

Security: --security POLICY:MODE (default None:None). The server offers exactly one endpoint,
that policy and mode (no None endpoint besides a secured one), e.g. Basic256Sha256:Sign,
Basic256Sha256:SignAndEncrypt, Aes256_Sha256_RsaPss:Sign, Aes128_Sha256_RsaOaep:SignAndEncrypt.
With a secured policy the server uses ApplicationUri urn:uatap:test-server:asyncua and a
self-signed 2048-bit RSA certificate generated on first use into DIR/asyncua-server/
(cert.der, key.pem; --pki DIR, default <repo>/.cache/pki); every client certificate is
accepted (no certificate validator) unless --trust-dir DIR: then only the client certificates
in DIR are trusted, checked (asyncua's CertificateValidator, TRUSTED_VALIDATION) at CreateSession,
not at OpenSecureChannel. Before READY it prints "CERT <path of cert.der>" so that
a client can be given the server certificate without a discovery connection.

Refusals, one way each (for the reject tests, tests/rejects.rs):
  --max-sessions N   at most N activated sessions (asyncua's InternalSession.max_connections):
                     the ActivateSession of one more is refused (asyncua sends
                     Bad_MaxConnectionsReached).
  --max-connections N  at most N TCP connections (asyncua's max_connections): one more is closed
                     as soon as it is accepted, before any answer to its Hello.
  --no-anonymous     no anonymous user token policy: an anonymous ActivateSession is refused
                     (asyncua sends Bad_IdentityTokenRejected).
  --user NAME --password-env VAR
                     a user name / password user, the password read from the environment
                     variable VAR (never from the command line, never printed); with a user set,
                     anonymous logins are still allowed unless --no-anonymous, and a user name
                     with a wrong password is refused (asyncua sends Bad_UserAccessDenied).
asyncua does not check the EndpointUrl of the client's Hello: any path is accepted.

--port 0 listens on a port the system picks; READY names it.
Prints "READY opc.tcp://HOST:N/UA/Test" on stdout (flushed) once listening, then runs
until SIGTERM/SIGINT or --duration seconds. --port 0 listens on a port the system chooses, named
on the READY line (the endpoints the server advertises then say port 0). Exit status 0 on a
clean stop, non-zero on error.
"""

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_session import InternalSession
from asyncua.server.user_managers import UserManager
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography.x509.oid import ExtendedKeyUsageOID
from peer_common import DEFAULT_PKI, MODES, POLICIES, parse_security  # noqa: E402

NS = 1
APP_URI = "urn:uatap:test-server:asyncua"


def log(msg: str) -> None:
    print(msg, flush=True)


class OneUser(UserManager):
    """Anonymous (when allowed) plus one user name / password."""

    def __init__(self, name: str | None, password: str | None) -> None:
        self.name, self.password = name, password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username is None and certificate is None:
            return User(role=UserRole.User)
        if self.name is not None and username == self.name and password == self.password:
            return User(role=UserRole.User, name=username)
        return None


async def run(args: argparse.Namespace) -> int:
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"opc.tcp://{host}:{args.port}/UA/Test"
    password = None
    if args.user:
        if not args.password_env:
            raise SystemExit("--user needs --password-env VAR")
        password = os.environ.get(args.password_env)
        if password is None:
            raise SystemExit(f"--password-env: {args.password_env} is not set")
    # Without --user / --no-anonymous, asyncua's default (permissive) user manager.
    users = OneUser(args.user, password) if args.user or args.no_anonymous else None
    server = Server(user_manager=users)
    await server.init()
    server.set_endpoint(url)
    if args.user or args.no_anonymous:
        anonymous = [] if args.no_anonymous else [ua.AnonymousIdentityToken]
        server.set_identity_tokens(anonymous + [ua.UserNameIdentityToken])
    if args.max_sessions:
        InternalSession.max_connections = args.max_sessions
    if args.max_connections:
        server.iserver.max_connections = args.max_connections
    server.set_server_name("uatap test server (asyncua)")
    policy, mode = args.security
    if policy == "None":
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    else:
        await server.set_application_uri(APP_URI)
        pki = (args.pki or DEFAULT_PKI) / "asyncua-server"
        pki.mkdir(parents=True, exist_ok=True)
        cert, key = pki / "cert.der", pki / "key.pem"
        await setup_self_signed_certificate(
            key, cert, APP_URI, socket.gethostname(),
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"organizationName": "uatap"},
        )
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy([getattr(ua.SecurityPolicyType, f"{policy.replace('_', '')}_{mode}")])
        if args.trust_dir is not None:
            store = TrustStore([args.trust_dir], [])
            await store.load()
            server.set_certificate_validator(CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store))
        log(f"CERT {cert}")

    objects = server.nodes.objects
    counter = await objects.add_variable(
        ua.NodeId("Counter", NS), ua.QualifiedName("Counter", NS), ua.Variant(0, ua.VariantType.Int32)
    )
    items = []
    for i in range(args.items):
        node = await objects.add_variable(
            ua.NodeId(f"Item.{i}", NS), ua.QualifiedName(f"Item.{i}", NS), ua.Variant(0.0, ua.VariantType.Double)
        )
        items.append(node.nodeid)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.duration:
        loop.call_later(args.duration, stop.set)

    await server.start()
    if args.port == 0:  # the system chose the port: the listening socket knows which
        url = f"opc.tcp://{host}:{server.bserver.port}/UA/Test"
    log(f"READY {url}")

    period = args.period / 1000.0
    tick = 0
    next_t = time.monotonic()
    try:
        while not stop.is_set():
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except asyncio.TimeoutError:
                    pass
            else:
                next_t = time.monotonic()  # fell behind: do not burst to catch up
            tick += 1
            await counter.write_value(ua.Variant(tick, ua.VariantType.Int32))
            for i, nodeid in enumerate(items):
                await server.write_attribute_value(
                    nodeid, ua.DataValue(ua.Variant(tick + i / 10000.0, ua.VariantType.Double))
                )
    finally:
        await server.stop()
        log(f"server stopped after {tick} ticks")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True, help="TCP port (0: the system picks one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; IPv6 e.g. ::1)")
    p.add_argument("--items", type=int, default=0, help="number of extra Double variables Item.0..K-1")
    p.add_argument("--period", type=int, default=100, help="update period in ms (default 100)")
    p.add_argument("--duration", type=float, default=0, help="stop after S seconds (default: run until signal)")
    p.add_argument("--max-notif", type=int, default=0, help="accepted for symmetry with ua_server.js; ignored")
    p.add_argument("--security", type=parse_security, default=("None", "None"), metavar="POLICY:MODE",
                   help="the one endpoint offered, e.g. Basic256Sha256:Sign (default None:None)")
    p.add_argument("--pki", type=Path, help="PKI folder (default <repo>/.cache/pki); the server's "
                   "certificate and key are in DIR/asyncua-server/")
    p.add_argument("--trust-dir", type=Path, metavar="DIR",
                   help="trust only the client certificates in DIR (asyncua checks them at CreateSession)")
    p.add_argument("--max-sessions", type=int, default=0, help="at most N activated sessions")
    p.add_argument("--max-connections", type=int, default=0, help="at most N TCP connections")
    p.add_argument("--no-anonymous", action="store_true", help="refuse anonymous logins")
    p.add_argument("--user", help="a user name accepted with the password from --password-env")
    p.add_argument("--password-env", metavar="VAR", help="environment variable holding --user's password")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s:%(name)s:%(message)s")
    try:
        return asyncio.run(run(args))
    except Exception as exc:  # noqa: BLE001 - any failure is fatal for a test peer
        logging.exception("server failed: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
