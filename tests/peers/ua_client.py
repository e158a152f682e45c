#!/usr/bin/env python3
"""asyncua OPC UA test client for uatap integration tests.

    ua_client.py basic URL [--seconds S]           (default S = 3)
    ua_client.py big URL --items K [--seconds S]   (default S = 4)
    ua_client.py discover URL [--seconds S]        (default S = 3)
    ua_client.py watch URL [--seconds S]           (default S = 10)
    common options: [--security POLICY:MODE] [--pki DIR] [--server-cert FILE]
                    [--cert FILE --key FILE] [--user NAME --password-env VAR]

Anonymous, or with --user NAME the user name and the password read from the environment
variable --password-env VAR (never from the command line, never printed). The connection sequence is HEL, OPN, GetEndpoints, CreateSession, ActivateSession
on one channel.

Security: --security POLICY:MODE (default None:None), e.g. Basic256Sha256:Sign,
Basic256Sha256:SignAndEncrypt, Aes256_Sha256_RsaPss:Sign. With a secured policy the client uses
ApplicationUri urn:uatap:test-client:asyncua and a self-signed 2048-bit RSA certificate
generated on first use into DIR/asyncua-client/ (cert.der, key.pem; --pki DIR, default
<repo>/.cache/pki). The server certificate is taken from --server-cert (DER or PEM; the servers
print its path on a "CERT" line) and trusted as is; without --server-cert asyncua asks the server
for it first over a separate SecurityPolicy None connection (GetEndpoints), which then also
shows up in a capture. --cert FILE --key FILE (DER or PEM certificate, PEM key) make the
client use that application certificate as it is, whatever its dates (asyncua would otherwise
replace an expired one), e.g. one made by make_cert.py.

basic: Read ns=1;s=Counter, one subscription (publishing interval 100 ms) monitoring Counter
       (sampling 50 ms, queue 10); prints "<elapsed> datachange ns=1;s=Counter <value>" for every
       notification; after S seconds DeleteSubscriptions, CloseSession, CLO, TCP close; prints
       "done; values N gaps [...]" (gaps = Counter values that were skipped).
discover: like Eclipse Milo (Ignition): GetEndpoints on URL over its own connection, prints
       "ENDPOINT <EndpointUrl>" of the endpoint matching --security, then connects to that
       advertised URL (not to URL) and does what basic does.
big:   one subscription (publishing interval 1000 ms, MaxNotificationsPerPublish 0) with K
       items ns=1;s=Item.0..K-1 in one CreateMonitoredItems (queue 10 each); after S seconds
       tears down like basic and prints "done; notifications N".
watch: stays up S seconds through connection losses, with asyncua's own reconnection: asyncua
       2.1.0 has one, off by default (Client(auto_reconnect=True)). Its supervisor Reads
       ServerState every second (a Read unanswered within 1 s is a lost connection; the client's
       request timeout is 2 s); on a loss it opens a new socket and SecureChannel, tries
       ActivateSession on the old session (CreateSession + ActivateSession if that fails), then
       per subscription TransferSubscriptions (SendInitialValues false) and Republish from the
       last data sequence number + 1 until Bad_MessageNotAvailable; a failed transfer or an
       unfilled gap makes it recreate the subscription and its items. A gap in the sequence
       numbers on a live connection is not acted on. One subscription (publishing interval
       100 ms, MaxKeepAliveCount 5, LifetimeCount 300, session timeout 30 s) monitoring Counter
       (sampling 50 ms, queue 10). Prints one line per NotificationMessage the stack hands to
       the subscription:
           "<elapsed> notification sub=ID seq=N values=V1,V2[ republished]"
           "<elapsed> keepalive sub=ID seq=N"
           "<elapsed> status sub=ID seq=N status=NAME"
       ("republished": the message came from a Republish), and "<elapsed> stack: TEXT" for what
       asyncua reports of the reconnect (its INFO/WARNING log lines: lost connection, session
       reused or recreated, transfer, republish, recreate). Ends with DeleteSubscriptions,
       CloseSession and "done; last seq N values M"; a reconnect in progress at the end of the
       S seconds, or ended less than 3 s before, makes it stay until 3 s after it ended (8 s
       more at most).

Exit status 0 on success, non-zero on any error (or when no notification arrived at all).
"""

import argparse
import asyncio
import logging
import os
import socket
import sys
import time
from pathlib import Path

from asyncua import Client, ua
from asyncua.common.subscription import Subscription
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID
from peer_common import DEFAULT_PKI, MODES, POLICIES, parse_security  # noqa: E402

T0 = time.monotonic()
APP_URI = "urn:uatap:test-client:asyncua"


def log(msg: str) -> None:
    print(f"{time.monotonic() - T0:8.3f} {msg}", flush=True)


class TapClient(Client):
    """Client that asks for the endpoints on the session's own channel before CreateSession
    (the same sequence as in fixtures/basic-none.pcapng)."""

    async def _create_and_activate_session(self) -> None:
        endpoints = await self.get_endpoints()
        log(f"GetEndpoints -> {len(endpoints)} endpoints")
        await super()._create_and_activate_session()


class BasicHandler:
    def __init__(self) -> None:
        self.values: list[int] = []

    def datachange_notification(self, node, val, data) -> None:
        log(f"datachange {node.nodeid.to_string()} {val}")
        self.values.append(val)


class CountHandler:
    def __init__(self) -> None:
        self.count = 0

    def datachange_notification(self, node, val, data) -> None:
        self.count += 1


# watch: how long to stay after a reconnect ends (and while one is in progress), past --seconds.
SETTLE = 3.0
MAX_SETTLE = 8.0


class ReconnectState:
    busy = False
    done_at = float("-inf")


RECONNECT = ReconnectState()


class StackLog(logging.Handler):
    """asyncua's own account of a reconnect, as "stack:" lines (not its per-Publish chatter)."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("Publish callback called"):
            return
        if text.startswith("Supervisor detected"):
            RECONNECT.busy = True
        elif text.startswith("Reconnected successfully"):
            RECONNECT.busy = False
            RECONNECT.done_at = time.monotonic()
        log(f"stack: {text.splitlines()[0]}")


def log_notification_messages() -> None:
    """Wraps Subscription.publish_callback, which asyncua calls with every PublishResult of a
    subscription (from Publish and from its Republish loop), to log what the stack received."""
    received = Subscription.publish_callback

    async def logged(self: Subscription, result: ua.PublishResult) -> None:
        msg = result.NotificationMessage
        head = f"sub={result.SubscriptionId} seq={msg.SequenceNumber}"
        if not msg.NotificationData:
            log(f"keepalive {head}")
        for data in msg.NotificationData or []:
            if isinstance(data, ua.DataChangeNotification):
                values = ",".join(str(m.Value.Value.Value) for m in data.MonitoredItems)
                log(f"notification {head} values={values}{' republished' if self._replaying else ''}")
            elif isinstance(data, ua.StatusChangeNotification):
                log(f"status {head} status={data.Status.name}")
        await received(self, result)

    Subscription.publish_callback = logged


class WatchHandler:
    def __init__(self) -> None:
        self.values = 0

    def datachange_notification(self, node, val, data) -> None:
        self.values += 1

    def status_change_notification(self, status) -> None:
        pass


async def watch(client: Client, seconds: float) -> int:
    params = ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=100,
        RequestedLifetimeCount=300,
        RequestedMaxKeepAliveCount=5,
        MaxNotificationsPerPublish=0,
        PublishingEnabled=True,
        Priority=0,
    )
    handler = WatchHandler()
    sub = await client.create_subscription(params, handler)
    await sub.subscribe_data_change(client.get_node("ns=1;s=Counter"), queuesize=10, sampling_interval=50)
    log(f"WATCHING sub={sub.subscription_id}")
    await asyncio.sleep(seconds)
    settle_end = time.monotonic() + MAX_SETTLE
    while (RECONNECT.busy or time.monotonic() - RECONNECT.done_at < SETTLE) and time.monotonic() < settle_end:
        await asyncio.sleep(0.2)  # a reconnect in progress or just done: see how it ends
    messages = sub.last_sequence_number or 0
    await sub.delete()
    await asyncio.sleep(0)  # let queued handler tasks run
    log(f"done; last seq {messages} values {handler.values}")
    return 0 if handler.values else 3


def gaps_of(values: list[int]) -> list[int]:
    gaps: list[int] = []
    for a, b in zip(values, values[1:]):
        if b > a + 1:
            gaps.extend(range(a + 1, b))
    return gaps


async def basic(client: Client, seconds: float) -> int:
    counter = client.get_node("ns=1;s=Counter")
    value = await counter.read_value()
    log(f"Read Counter = {value}")
    handler = BasicHandler()
    sub = await client.create_subscription(100, handler)
    await sub.subscribe_data_change(counter, queuesize=10)
    await asyncio.sleep(seconds)
    await sub.delete()
    await asyncio.sleep(0)  # let queued handler tasks run
    log(f"done; values {len(handler.values)} gaps {gaps_of(handler.values)}")
    return 0 if handler.values else 3


async def big(client: Client, seconds: float, items: int) -> int:
    params = ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=1000,
        RequestedLifetimeCount=3600,
        RequestedMaxKeepAliveCount=10,
        MaxNotificationsPerPublish=0,
        PublishingEnabled=True,
        Priority=0,
    )
    handler = CountHandler()
    sub = await client.create_subscription(params, handler)
    nodes = [client.get_node(f"ns=1;s=Item.{i}") for i in range(items)]
    results = await sub.subscribe_data_change(nodes, queuesize=10)
    bad = [r for r in results if isinstance(r, ua.StatusCode)]
    if bad:
        raise RuntimeError(f"{len(bad)} monitored items failed, first: {bad[0]}")
    log(f"monitoring {items} items")
    await asyncio.sleep(seconds)
    await sub.delete()
    for _ in range(10):  # let queued handler tasks run
        await asyncio.sleep(0.01)
    log(f"done; notifications {handler.count}")
    return 0 if handler.count else 3


async def setup_security(client: Client, args: argparse.Namespace) -> None:
    policy, mode = args.security
    if policy == "None":
        return
    client.application_uri = APP_URI
    if args.cert and args.key:
        cert, key = args.cert, args.key
    else:
        pki = (args.pki or DEFAULT_PKI) / "asyncua-client"
        pki.mkdir(parents=True, exist_ok=True)
        cert, key = pki / "cert.der", pki / "key.pem"
        await setup_self_signed_certificate(
            key, cert, APP_URI, socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH], {"organizationName": "uatap"}
        )
    await client.set_security(
        getattr(security_policies, f"SecurityPolicy{policy.replace('_', '')}"),
        str(cert),
        str(key),
        server_certificate=str(args.server_cert) if args.server_cert else None,
        mode=getattr(ua.MessageSecurityMode, mode),
    )
    log(f"security {policy} {mode}, certificate {cert}")


async def advertised_url(args: argparse.Namespace) -> str:
    """GetEndpoints on args.url; the EndpointUrl of the endpoint with the wanted security."""
    policy, mode = args.security
    probe = Client(args.url, timeout=15)
    endpoints = await probe.connect_and_get_server_endpoints()
    for ep in endpoints:
        log(f"advertised {ep.EndpointUrl} {ep.SecurityPolicyUri} {ep.SecurityMode.name.rstrip('_')}")
    for ep in endpoints:
        if ep.SecurityPolicyUri.endswith("#" + policy) and ep.SecurityMode.name.rstrip("_") == mode:
            log(f"ENDPOINT {ep.EndpointUrl}")
            return ep.EndpointUrl
    raise RuntimeError(f"no {policy}:{mode} endpoint among {len(endpoints)}")


async def run(args: argparse.Namespace) -> int:
    url = await advertised_url(args) if args.mode == "discover" else args.url
    if args.mode == "watch":
        client = TapClient(url, timeout=2, watchdog_intervall=1.0, auto_reconnect=True,
                           reconnect_max_delay=2.0, reconnect_request_timeout=20.0)
        client.session_timeout = 30000
        for name in ("asyncua.client.client", "asyncua.common.subscription"):
            logger = logging.getLogger(name)
            logger.setLevel(logging.INFO)
            logger.addHandler(StackLog())
            logger.propagate = False
        log_notification_messages()
    else:
        client = TapClient(url, timeout=15)
    if args.user:
        password = os.environ.get(args.password_env or "")
        if password is None:
            raise RuntimeError("--user needs --password-env VAR naming a variable that is set")
        client.set_user(args.user)
        client.set_password(password)
    await setup_security(client, args)
    await client.connect()
    try:
        if args.mode == "watch":
            rc = await watch(client, args.seconds if args.seconds is not None else 10.0)
        elif args.mode in ("basic", "discover"):
            rc = await basic(client, args.seconds if args.seconds is not None else 3.0)
        else:
            rc = await big(client, args.seconds if args.seconds is not None else 4.0, args.items)
    finally:
        await client.disconnect()
    return rc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["basic", "big", "discover", "watch"])
    p.add_argument("url")
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--security", type=parse_security, default=("None", "None"), metavar="POLICY:MODE",
                   help="e.g. Basic256Sha256:SignAndEncrypt (default None:None)")
    p.add_argument("--pki", type=Path, help="PKI folder (default <repo>/.cache/pki); the client's "
                   "certificate and key are in DIR/asyncua-client/")
    p.add_argument("--server-cert", type=Path, help="server certificate (DER/PEM) to use and trust")
    p.add_argument("--cert", type=Path, help="client certificate to use as is (with --key)")
    p.add_argument("--key", type=Path, help="private key (PEM) of --cert")
    p.add_argument("--user", help="log in with this user name (password from --password-env)")
    p.add_argument("--password-env", metavar="VAR", help="environment variable holding the password")
    args = p.parse_args()
    if (args.cert is None) != (args.key is None):
        p.error("--cert and --key go together")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    limit = (args.seconds or 4.0) + 60
    try:
        rc = asyncio.run(asyncio.wait_for(run(args), limit))
    except Exception as exc:  # noqa: BLE001 - any failure is fatal for a test peer
        logging.exception("client failed: %r", exc)
        return 1
    log(f"exit {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
