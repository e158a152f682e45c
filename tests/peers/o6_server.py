#!/usr/bin/env python3
"""open62541 OPC UA test server (through o6, its Python bindings) for uatap integration tests.

    o6_server.py --port N [--period MS] [--duration S]
                 [--security POLICY:MODE] [--pki DIR] [--no-auto-accept]
                 [--no-anonymous] [--user NAME --password-env VAR]

A third real OPC UA stack besides asyncua (ua_server.py) and node-opcua (ua_server.js): the
server is open62541's C server, which o6 2.2.0 (PyPI) wraps. It prints o6's banner; o6's free
"script mode" stops the application after 10 minutes, which is plenty for a test.

Address space (namespace 1):

    ns=1;s=Counter   Int32, +1 every --period ms (default 100)

Listening: o6 2.2.0 has no setting for the listening address, so open62541 listens on all
IPv4 addresses (0.0.0.0); the READY line and the tests use 127.0.0.1. --port 0 lets the system
pick the port; the script reads the port it got from /proc (o6 only knows the configured 0).
Prints "READY opc.tcp://127.0.0.1:N" on stdout (flushed) once listening, then runs until
SIGTERM/SIGINT or --duration seconds. open62541 does not check the path of the EndpointUrl in
the client's Hello: any path is accepted.

Security: --security POLICY:MODE (default None:None). With a secured one (e.g.
Basic256Sha256:SignAndEncrypt) the server uses ApplicationUri urn:uatap:test-server:o6 and a
self-signed 2048-bit RSA certificate generated on first use into DIR/o6-server/ (cert.der,
key.pem; --pki DIR, default <repo>/.cache/pki), offers no None endpoint, and prints
"CERT <path of cert.der>" before READY. open62541 then offers every secured policy it has, in
Sign and SignAndEncrypt (o6 has no setting for a single one); the policy named is the one
the tests use. Every client certificate is accepted unless --no-auto-accept: then open62541
validates client certificates against an empty trust list, so every client certificate is
untrusted. Without --security the one endpoint is None and there is no certificate.

Refusals, one way each (for the reject tests, tests/rejects.rs):
  --no-auto-accept   with --security: client certificates are not trusted (see above).
  --no-anonymous     no anonymous user token policy is advertised, and an anonymous
                     ActivateSession is refused.
  --user NAME --password-env VAR
                     a user name / password user, the password read from the environment
                     variable VAR (never from the command line, never printed). Anonymous logins
                     stay allowed unless --no-anonymous. A None endpoint accepts the password in
                     clear (open62541's allowNonePolicyPassword).
  The user check is o6's AccessControl hook (open62541's own user name plugin is not reachable
  from o6): it refuses the way open62541's default plugin (ua_accesscontrol_default.c) does,
  Bad_UserAccessDenied for a wrong user name or password and Bad_IdentityTokenInvalid for an
  anonymous token when anonymous is off. Whether open62541 refuses an anonymous token before the
  hook is asked, the server's log (stderr) says: the hook logs "hook refused ..." when it refuses.
o6 2.2.0 does not expose open62541's maxSessions or maxSecureChannels: no session or connection
limit can be set here.

Exit status 0 on a clean stop, non-zero on error.
"""

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import o6
from o6.ns import ns0
from peer_common import DEFAULT_PKI, parse_security  # noqa: E402

APP_URI = "urn:uatap:test-server:o6"


def log(msg: str) -> None:
    print(msg, flush=True)


def listening_ports() -> set[int]:
    """The TCP ports this process listens on (its sockets' inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            # local_address rem_address st ... inode; st 0A is LISTEN
            if f[3] == "0A" and f[9] in inodes:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


class Users(o6.AccessControl):
    """Anonymous (unless refused) plus at most one user name / password."""

    def __init__(self, anonymous: bool, name: str | None, password: str | None) -> None:
        # o6 wants at least one token policy: without anonymous, the user name one.
        super().__init__(anonymous=anonymous, username=name is not None or not anonymous)
        self.anonymous, self.name, self.password = anonymous, name, password

    def activateSession(self, endpoint, remoteCertificate, session, userIdentityToken):
        if isinstance(userIdentityToken, ns0.datatypes.AnonymousIdentityToken):
            if self.anonymous:
                return None
            logging.warning("hook refused an anonymous token: Bad_IdentityTokenInvalid")
            raise o6.StatusCodeError(o6.StatusCode.BAD_IDENTITY_TOKEN_INVALID)
        if isinstance(userIdentityToken, ns0.datatypes.UserNameIdentityToken):
            given = bytes(userIdentityToken.password or b"").decode("utf-8", "replace")
            if self.name is not None and userIdentityToken.userName == self.name and given == self.password:
                return None
            logging.warning("hook refused user %r: Bad_UserAccessDenied", userIdentityToken.userName)
            raise o6.StatusCodeError(o6.StatusCode.BAD_USER_ACCESS_DENIED)
        logging.warning("hook refused a %s: Bad_IdentityTokenInvalid", type(userIdentityToken).__name__)
        raise o6.StatusCodeError(o6.StatusCode.BAD_IDENTITY_TOKEN_INVALID)


def certificate(pki: Path) -> tuple[Path, Path]:
    """The server's certificate and key in pki/o6-server/, made on first use."""
    import asyncio

    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    d = pki / "o6-server"
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "cert.der", d / "key.pem"
    asyncio.run(setup_self_signed_certificate(
        key, cert, APP_URI, socket.gethostname(),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"organizationName": "uatap"},
    ))
    return cert, key


def run(args: argparse.Namespace) -> int:
    password = None
    if args.user:
        if not args.password_env:
            raise SystemExit("--user needs --password-env VAR")
        password = os.environ.get(args.password_env)
        if password is None:
            raise SystemExit(f"--password-env: {args.password_env} is not set")
    options: dict = {}
    policy, _mode = args.security
    if policy != "None":
        cert, key = certificate(args.pki or DEFAULT_PKI)
        options.update(certificate=cert, privateKey=key, secureOnly=True, applicationUri=APP_URI,
                       acceptAllCertificates=not args.no_auto_accept)
        if args.no_auto_accept:
            # An empty trust list turns certificate checking off ("No certificate store
            # configured. Accepting the certificate."): trust only the server's own certificate.
            options["trustList"] = [cert]
    elif args.no_auto_accept:
        raise SystemExit("--no-auto-accept needs --security")
    if args.user or args.no_anonymous:
        options.update(accessControl=Users(not args.no_anonymous, args.user, password),
                       allowNonePolicyPassword=True)
    logger = logging.getLogger("open62541")
    server = o6.Server(port=args.port, logger=logger, **options)
    counter = server.addVariable("Counter", server.objectsNode, o6.Int32(0), nodeId="ns=1;s=Counter")
    if policy != "None":
        log(f"CERT {cert}")
    server.start()
    ports = listening_ports()
    if len(ports) != 1:
        raise SystemExit(f"cannot tell the listening port: {sorted(ports)}")
    log(f"READY opc.tcp://127.0.0.1:{ports.pop()}")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.duration:
        threading.Timer(args.duration, stop.set).start()
    tick = 0
    try:
        while not stop.wait(args.period / 1000.0):
            tick += 1
            counter(o6.Int32(tick))
    finally:
        server.stop()
        log(f"server stopped after {tick} ticks")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True, help="TCP port (0: the system picks one)")
    p.add_argument("--period", type=int, default=100, help="update period in ms (default 100)")
    p.add_argument("--duration", type=float, default=0, help="stop after S seconds (default: run until signal)")
    p.add_argument("--security", type=parse_security, default=("None", "None"), metavar="POLICY:MODE",
                   help="a secured policy turns on every secured endpoint open62541 has (default None:None)")
    p.add_argument("--pki", type=Path, help="PKI folder (default <repo>/.cache/pki); the server's "
                   "certificate and key are in DIR/o6-server/")
    p.add_argument("--no-auto-accept", action="store_true", help="trust no client certificate")
    p.add_argument("--no-anonymous", action="store_true", help="refuse anonymous logins")
    p.add_argument("--user", help="a user name accepted with the password from --password-env")
    p.add_argument("--password-env", metavar="VAR", help="environment variable holding --user's password")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s:%(name)s:%(message)s")
    try:
        return run(args)
    except Exception as exc:  # noqa: BLE001 - any failure is fatal for a test peer
        logging.exception("server failed: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
