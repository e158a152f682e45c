#!/usr/bin/env python3
"""asyncua OPC UA test server for uatap integration tests.

    ua_server.py --port N [--items K] [--period MS] [--duration S]

Listens on 127.0.0.1 only; endpoint opc.tcp://127.0.0.1:N/UA/Test, SecurityPolicy None
only, anonymous login allowed. Address space (namespace 1, the server's own):

    ns=1;s=Counter   Int32, +1 every --period ms (default 100)
    ns=1;s=Item.<i>  Double, i = 0..K-1, all changed every --period ms

Prints "READY opc.tcp://127.0.0.1:N/UA/Test" on stdout (flushed) once listening, then runs
until SIGTERM/SIGINT or --duration seconds. Exit status 0 on a clean stop, non-zero on error.
"""

import argparse
import asyncio
import logging
import signal
import sys
import time

from asyncua import Server, ua

NS = 1


def log(msg: str) -> None:
    print(msg, flush=True)


async def run(args: argparse.Namespace) -> int:
    url = f"opc.tcp://127.0.0.1:{args.port}/UA/Test"
    server = Server()
    await server.init()
    server.set_endpoint(url)
    server.set_server_name("uatap test server (asyncua)")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])

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
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--items", type=int, default=0, help="number of extra Double variables Item.0..K-1")
    p.add_argument("--period", type=int, default=100, help="update period in ms (default 100)")
    p.add_argument("--duration", type=float, default=0, help="stop after S seconds (default: run until signal)")
    p.add_argument("--max-notif", type=int, default=0, help="accepted for symmetry with ua_server.js; ignored")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s:%(name)s:%(message)s")
    try:
        return asyncio.run(run(args))
    except Exception as exc:  # noqa: BLE001 - any failure is fatal for a test peer
        logging.exception("server failed: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
