#!/usr/bin/env python3
"""A TCP proxy that holds every chunk for a fixed delay in each direction: a database "5 ms away"
on loopback, without `tc netem` (which needs NET_ADMIN and slows every loopback user).

    bench/latency_proxy.py --listen 127.0.0.1:15432 --to 127.0.0.1:5432 --delay 5ms

Order is kept per direction (each chunk leaves `delay` after it arrived, in arrival order), so
a round trip costs 2 x delay more. Prints `listening on HOST:PORT` once ready. BENCHMARKS.md
("High availability: a database 5 ms away") uses it with bench/compare.py --postgres.
"""
import argparse
import asyncio
import re
import sys


def span_s(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", text)
    if not m:
        sys.exit(f"bad span {text!r}: use e.g. 5ms")
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


async def pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    finally:
        queue.put_nowait((0, None))
        await sender


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:15432")
    ap.add_argument("--to", default="127.0.0.1:5432")
    ap.add_argument("--delay", default="5ms", help="held this long in each direction")
    args = ap.parse_args()
    delay = span_s(args.delay)
    host, port = args.to.rsplit(":", 1)

    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, server_w, delay), pipe(server_r, client_w, delay), return_exceptions=True)

    lhost, lport = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, lhost, int(lport))
    print(f"listening on {lhost}:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
