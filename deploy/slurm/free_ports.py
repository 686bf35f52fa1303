"""Free TCP ports for a Ray node's daemons, drawn below the kernel's ephemeral range.

    python free_ports.py N      # prints N distinct free ports, space-separated

A port found free by binding port 0 is an *ephemeral* one: once that socket is closed, the
next process on the node that binds port 0 (Ray starts dozens while a node comes up) may be
handed the very same port before the daemon it was meant for binds it. Seen in CI: the
runtime-env agent's port taken by a Prometheus exporter, so every job's runtime env failed
with "HTTP 405 ... use OPTIONS or GET". (Ray's head also binds two fixed Prometheus ports
inside that range, the dashboard's 44227 and the autoscaler's 44217: a port-0 draw can return
either while it is still free.) And a server restarted on its port (the local
cluster's MLflow) is safe there: while it is down, clients retrying it get ephemeral source
ports, and one landing on the very port they dial connects to itself (TCP simultaneous open)
and holds it (seen: 120 s of "connection refused"). Ports below the ephemeral range are never handed out
that way; the ones drawn here are also above Ray's worker ports (10002-19999 by default).
Each is checked free on every address, and all are held until the last is drawn, so the N
are distinct. Two nodes drawing at the same instant on one machine can still meet (one in
~12,000 per port): a daemon that cannot bind then fails its `ray start` loudly.
"""
from __future__ import annotations

import random
import socket
import sys
from pathlib import Path

RAY_WORKER_PORTS_END = 19999  # `ray start --max-worker-port` default


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return low, high


def free_ports(count: int) -> list[int]:
    low, _ = ephemeral_range()
    candidates = range(RAY_WORKER_PORTS_END + 1, low)
    if len(candidates) < 100 * count:  # an unusual ephemeral range: below Ray's worker ports
        candidates = range(1024, min(low, 10002))
    draw = random.SystemRandom()
    held: list[socket.socket] = []
    try:
        for _ in range(200 * count):
            if len(held) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("", draw.choice(candidates)))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        if len(held) < count:
            raise RuntimeError(f"found only {len(held)} of {count} free ports in {candidates.start}-{candidates.stop - 1}")
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


if __name__ == "__main__":
    print(*free_ports(int(sys.argv[1])))
