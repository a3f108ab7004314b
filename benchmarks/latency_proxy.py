"""A TCP relay that adds a fixed delay in each direction, standing in for the network between
Cloud Run and Cloud SQL (about 1 ms per round trip: 0.5 ms each way by default).

    python -m benchmarks.latency_proxy --listen 6543 --target 127.0.0.1:5432 --delay-ms 0.5

Each direction of each connection has a reader that stamps every chunk with the time it may
leave and a writer that sends it then: the delay is added once per chunk, chunks keep their
order, and a busy connection is not slowed below its own pace (the delay is latency, not a
bandwidth limit). A separate process, so that its work does not share the benchmark's GIL.
"""
from __future__ import annotations

import argparse
import queue
import socket
import threading
import time


def _pump(source: socket.socket, sink: socket.socket, delay_s: float) -> None:
    chunks: queue.SimpleQueue = queue.SimpleQueue()

    def read():
        try:
            while data := source.recv(65536):
                chunks.put((time.perf_counter() + delay_s, data))
        except OSError:
            pass
        chunks.put((0.0, b""))

    def write():
        try:
            while True:
                due, data = chunks.get()
                if not data:
                    break
                # sleep() is precise to tens of microseconds here; the last stretch spins.
                wait = due - time.perf_counter()
                if wait > 0.0002:
                    time.sleep(wait - 0.0001)
                while time.perf_counter() < due:
                    pass
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (sink, source):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=write, daemon=True).start()


def serve(listen_port: int, target: tuple[str, int], delay_s: float, ready=None) -> None:
    server = socket.create_server(("127.0.0.1", listen_port), reuse_port=False, backlog=512)
    if ready is not None:
        ready(server.getsockname()[1])
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(target)
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _pump(client, upstream, delay_s)
        _pump(upstream, client, delay_s)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 (0: any free one)")
    p.add_argument("--target", default="127.0.0.1:5432", help="host:port of PostgreSQL")
    p.add_argument("--delay-ms", type=float, default=0.5, help="added per direction (default 0.5)")
    args = p.parse_args(argv)
    host, port = args.target.rsplit(":", 1)
    serve(args.listen, (host, int(port)), args.delay_ms / 1000,
          ready=lambda bound: print(f"listening on {bound}", flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
