#!/usr/bin/env python3
"""asyncua OPC UA test client for uatap integration tests.

    ua_client.py basic URL [--seconds S]           (default S = 3)
    ua_client.py big URL --items K [--seconds S]   (default S = 4)

Security None, anonymous. The connection sequence is HEL, OPN, GetEndpoints, CreateSession,
ActivateSession on one channel.

basic: Read ns=1;s=Counter, one subscription (publishing interval 100 ms) monitoring Counter
       (sampling 50 ms, queue 10); prints "<elapsed> datachange ns=1;s=Counter <value>" for every
       notification; after S seconds DeleteSubscriptions, CloseSession, CLO, TCP close; prints
       "done; values N gaps [...]" (gaps = Counter values that were skipped).
big:   one subscription (publishing interval 1000 ms, MaxNotificationsPerPublish 0) with K
       items ns=1;s=Item.0..K-1 in one CreateMonitoredItems (queue 10 each); after S seconds
       tears down like basic and prints "done; notifications N".

Exit status 0 on success, non-zero on any error (or when no notification arrived at all).
"""

import argparse
import asyncio
import logging
import sys
import time

from asyncua import Client, ua

T0 = time.monotonic()


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


async def run(args: argparse.Namespace) -> int:
    client = TapClient(args.url, timeout=15)
    await client.connect()
    try:
        if args.mode == "basic":
            rc = await basic(client, args.seconds if args.seconds is not None else 3.0)
        else:
            rc = await big(client, args.seconds if args.seconds is not None else 4.0, args.items)
    finally:
        await client.disconnect()
    return rc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["basic", "big"])
    p.add_argument("url")
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--items", type=int, default=2000)
    args = p.parse_args()
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
