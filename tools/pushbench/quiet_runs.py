#!/usr/bin/env python3
"""Runs a pushbench command N times on a quiet machine and prints the medians.

Before each run it waits until the machine has been nearly idle (< 8% CPU busy) for 3 s; after
each run it compares the machine's total CPU time with what pushbench and its pushd used, and
discards the run when other processes took more than 5% of the machine. Every run's JSON line
(with foreign_cpu_fraction added) is appended to OUT.

usage: quiet_runs.py OUT RUNS -- pushbench --pushd=... --scenario=... [flags]
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def busy_and_total():
    v = list(map(int, open('/proc/stat').readline().split()[1:9]))
    return sum(v) - v[3] - v[4], sum(v)  # idle and iowait are not busy


def wait_quiet(limit_s=900, window_s=3, busy_below=0.08, warn=True):
    """Waits (at most limit_s) until the machine has been less than busy_below busy for
    window_s; returns how long it waited."""
    start = time.time()
    while time.time() - start < limit_s:
        b0, t0 = busy_and_total()
        time.sleep(window_s)
        b1, t1 = busy_and_total()
        if (b1 - b0) / max(1, t1 - t0) < busy_below:
            return time.time() - start
    if warn:
        print(f'machine still busy after {limit_s} s; running anyway', file=sys.stderr)
    return time.time() - start


def field(d, path):
    for key in path.split('.'):
        d = d.get(key) if isinstance(d, dict) else None
    return d


FIELDS = ['connect_rate', 'delivered_per_s', 'push_rate', 'measure_seconds', 'latency_ms.p50',
          'latency_ms.p90', 'latency_ms.p99', 'latency_ms.p999', 'latency_ms.max',
          'server.rss_per_conn_bytes', 'server.cpu_seconds', 'server.deliveries_per_cpu_s',
          'client_cpu_seconds', 'pings', 'lost', 'duplicated']


def main():
    if len(sys.argv) < 5 or sys.argv[3] != '--':
        sys.exit(__doc__)
    out, runs, command = sys.argv[1], int(sys.argv[2]), sys.argv[4:]
    hz = os.sysconf('SC_CLK_TCK')
    kept, attempts = [], 0
    while len(kept) < runs and attempts < runs * 4:
        attempts += 1
        wait_quiet()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        b0, _ = busy_and_total()
        start = time.time()
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = time.time() - start
        b1, _ = busy_and_total()
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ours = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        foreign = max(0.0, (b1 - b0) / hz - ours) / (wall * os.cpu_count())
        lines = proc.stdout.strip().splitlines()
        try:
            run = json.loads(lines[-1])
        except (IndexError, ValueError):
            run = {'ok': False, 'errors': [proc.stderr[-500:]]}
        run['foreign_cpu_fraction'] = round(foreign, 3)
        with open(out, 'a') as f:
            f.write(json.dumps(run) + '\n')
        verdict = 'kept' if foreign < 0.05 else 'discarded: machine busy'
        print(f'run {attempts}: ok={run.get("ok")} others used {foreign:.1%} -> {verdict}',
              flush=True)
        if not run.get('ok'):
            print(proc.stdout[-2000:], proc.stderr[-2000:], flush=True)
        if foreign < 0.05:
            kept.append(run)
    summary = {'runs': len(kept), 'attempts': attempts, 'ok': all(r.get('ok') for r in kept)}
    for name in FIELDS:
        values = [field(r, name) for r in kept]
        values = [v for v in values if isinstance(v, (int, float))]
        if values:
            summary[name] = {'median': statistics.median(values), 'min': min(values),
                             'max': max(values)}
    print(json.dumps(summary))
    sys.exit(0 if summary['ok'] and len(kept) == runs else 1)


if __name__ == '__main__':
    main()
