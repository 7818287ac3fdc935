#!/usr/bin/env python3
"""A plain asyncio+ssl TLS scanner, the floor an established Python client sets.

usage: asyncio_client.py CONCURRENCY SNI CAFILE < targets  (one host:port a line)
One handshake per target with SNI, the peer chain read, then closed.
"""
import asyncio, ssl, sys

async def main():
    concurrency, sni, cafile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    targets = [line.strip().rsplit(":", 1) for line in sys.stdin if line.strip()]
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sem = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(host, port):
        nonlocal ok
        async with sem:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port), ssl=ctx, server_hostname=sni), 10)
                writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                ok += 1
                writer.transport.abort()
            except Exception:
                pass

    await asyncio.gather(*(one(h, p) for h, p in targets))
    print(f"{len(targets)} handshakes, {ok} ok")

asyncio.run(main())
