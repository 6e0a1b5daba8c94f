#!/usr/bin/env python3
"""Redis CPU per operation: one redis-server at a rate, against the same rate split over three.

A minimal program without pushd (BENCHMARKS.md, issue 16): does a fixed load cost Redis more CPU
when three servers share it than when one serves it all? It starts plain redis-servers on
loopback (no persistence, no cluster mode), then, alternating, sends --rate operations a second
for --duration seconds either all to one server or spread over three by user (as a cluster's
slots spread users), one request at a time at its scheduled moment, as pushd sends a push's
append. Each operation is one EVALSHA of a small append script (HINCRBY a counter, XADD a
--payload-byte entry to the user's stream, capped at 1,000 entries). Redis CPU is each server's
utime + stime from /proc over the sending phase.

usage: redis_split.py [--rate=6000] [--duration=20] [--rounds=3] [--users=1000] [--payload=256]
Prints one line per run and the medians: Redis us per operation, one server at --rate, three
together at --rate, and one server at a third of --rate (the load each of the three has).
Every server it starts is stopped at the end.
"""

import argparse
import os
import selectors
import shutil
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from redis_cpu import Topology, cpu_seconds  # noqa: E402 (the servers and /proc CPU as there)

SCRIPT = (b"local s = redis.call('HINCRBY', KEYS[1], 'seq', 1) "
          b"redis.call('XADD', KEYS[2], 'MAXLEN', 1000, '0-'..s, 'd', ARGV[1]) return s")
def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def call(conn, *args):
    conn.sendall(resp(*args))
    data = b""
    while not data.endswith(b"\r\n"):
        data += conn.recv(65536)
    return data


def run(conns, pids, rate, duration, users, payload, sha):
    for c in conns:
        call(c, "FLUSHALL")
    for c in conns:
        c.setblocking(False)
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c, selectors.EVENT_READ)
    total = int(rate * duration)
    before = [cpu_seconds(p) for p in pids]
    start = time.monotonic()
    sent = replies = 0
    while replies < total:
        now = time.monotonic()
        due = min(total, int((now - start) * rate) + 1)
        while sent < due:
            user = sent % users
            conn = conns[user % len(conns)]
            conn.sendall(resp("EVALSHA", sha, 2, f"{{u{user}}}:m", f"{{u{user}}}:s", payload))
            sent += 1
        wait = max(0.0, start + sent / rate - time.monotonic()) if sent < total else 1.0
        for key, _ in sel.select(timeout=wait):
            data = key.fileobj.recv(1 << 20)
            replies += data.count(b"\r\n")  # every reply here is one ":<seq>\r\n" line
        if time.monotonic() - start > duration * 3 + 10:
            raise SystemExit("replies did not keep up")
    elapsed = time.monotonic() - start
    cpu = sum(cpu_seconds(p) - b for p, b in zip(pids, before))
    for c in conns:
        sel.unregister(c)
        c.setblocking(True)
    return cpu, elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=6000)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--payload", type=int, default=256)
    a = p.parse_args()
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is not installed")
    folder = tempfile.mkdtemp(prefix="redis-split-")
    topologies = []
    servers = []  # (pid, port, connection)
    try:
        for i in range(3):
            topo = Topology("single", os.path.join(folder, str(i)))
            topologies.append(topo)
            topo.start(set())
            node = topo.nodes[0]
            servers.append((node["pid"], node["port"],
                            socket.create_connection(("127.0.0.1", node["port"]), timeout=5)))
        sha = None
        for _, _, c in servers:
            sha = call(c, "SCRIPT", "LOAD", SCRIPT).split(b"\r\n")[1]
        payload = b"x" * a.payload
        # one: the whole rate on one server; three: the same rate spread over three; one_third:
        # one server at a third of the rate (what each of the three serves).
        variants = (("one", servers[:1], a.rate), ("three", servers, a.rate),
                    ("one_third", servers[:1], a.rate / 3))
        results = {name: [] for name, _, _ in variants}
        for r in range(a.rounds):
            for name, chosen, rate in variants:
                cpu, elapsed = run([s[2] for s in chosen], [s[0] for s in chosen], rate,
                                   a.duration, a.users, payload, sha)
                us = cpu * 1e6 / (rate * a.duration)
                results[name].append(us)
                load = os.getloadavg()[0]
                print(f"round {r + 1} {name}: {len(chosen)} server(s), {rate:.0f} ops/s over "
                      f"{elapsed:.1f} s, Redis {cpu:.2f} s CPU = {us:.1f} us/op; load {load:.2f}",
                      flush=True)
        m = {name: statistics.median(v) for name, v in results.items()}
        print(f"medians: one server {m['one']:.1f} us/op; three servers {m['three']:.1f} us/op "
              f"together ({m['three'] / m['one']:.2f}x); one server at a third of the rate "
              f"{m['one_third']:.1f} us/op ({m['one_third'] / m['one']:.2f}x)")
    finally:
        for _, _, c in servers:
            c.close()
        for topo in topologies:
            topo.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
