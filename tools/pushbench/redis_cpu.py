#!/usr/bin/env python3
"""Redis CPU per push: pushd builds against one Redis or a Redis Cluster, alternating, one sitting.

Starts the Redis topologies it is asked for on loopback (no persistence, in a temporary folder),
then runs pushbench once per build per round, builds alternating, each run with its own pushd
(pushbench --pushd) pointed at the build's topology. Every redis-server's CPU time (utime + stime
from /proc) is read by pushbench at the same two points as pushd's (--watch_pids: from the first
push to the last delivery), so the figures cover the pushes and their deliveries, not pushd's
start or the 1,000 connects. Before each run every primary is emptied (FLUSHALL) and every node's
INFO commandstats reset; after it, the commandstats (which do cover the whole run) are kept.

usage: redis_cpu.py [--runs=3] [--out=FILE] [--bench=PUSHBENCH] [--quiet=SECONDS]
                    --topologies=T[,T...] "PUSHBENCH FLAGS" NAME=TOPOLOGY:PUSHD[ ARGS...]...
  topologies: none              no Redis: pushd's in-memory backend (for runs alongside)
              single            one redis-server
              single+replica    one primary and one replica (--replicaof)
              cluster1          a Redis Cluster of one primary holding every slot
              cluster3          a 3-primary Redis Cluster, no replicas
              cluster3+replicas a 3-primary Redis Cluster, one replica each
  a build:    NAME=TOPOLOGY:PATH to pushd, then any extra pushd flags after spaces, e.g.
              "w1=single+replica:build/services/pushd --redis_wait_replicas=1"; --redis=... or
              --redis_cluster=... is added to match the topology. A word --bench:FLAG is a
              pushbench flag for this build's runs only (e.g. --bench:--rate=2000).
  e.g. redis_cpu.py --topologies=single,cluster3 --out=a.jsonl \\
         "--scenario=throughput --mode=unary --rate=6000 --duration=20" \\
         one=single:build/services/pushd cluster=cluster3:build/services/pushd
       redis_cpu.py --summary a.jsonl      (medians of a file's runs again)
  With --scenario=churn (connection churn, pushbench's "churn" JSON object) the figures are per
  connect+disconnect cycle instead of per push: pushd us/cycle, Redis us/cycle, presence events
  per cycle, cycles/s; a run is kept when it made 98% of --rate x --duration cycles.

Prints and appends to --out one JSON line per run: the build, the 1-minute load average before
the run, the share of the machine's CPU that processes other than pushbench, its pushd and the
watched Redis nodes took during the run (foreign_cpu), pushbench's JSON line, the tail of its
stderr (pushd's warnings), and per Redis node its role, shard, CPU seconds over the measured
phase, and over the whole run its commandstats, INFO stats counters (socket reads and writes),
user and system CPU (INFO cpu) and context switches (/proc). Then the medians per build:
  Redis us/push    all Redis nodes' CPU over the measured phase / pushes confirmed
  per primary      each primary's us/push and share of the primaries' total
  replicas         the replicas' us/push together
  pushd us/deliv   pushd's CPU over the same phase / deliveries
  reads/push, writes/push, sleeps/push (voluntary switches), preemptions/push, system CPU share
                   the primaries over the whole run
A run in which other processes took more than --max_foreign of the machine, or that pushed under
98% of its --rate, is marked "kept": false, left out of the medians and tried again (3 tries).
Every redis-server this starts is stopped at the end, and the folder removed.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quiet_runs import busy_and_total, wait_quiet  # noqa: E402

HZ = os.sysconf('SC_CLK_TCK')
# INFO stats counters kept per node (since the run's CONFIG RESETSTAT): how many requests each
# socket read carried, i.e. how much the node batched.
STATS = ('total_commands_processed', 'total_reads_processed', 'total_writes_processed',
         'total_net_input_bytes', 'total_net_output_bytes', 'total_connections_received')
TOPOLOGIES = ('none', 'single', 'single+replica', 'cluster1', 'cluster3', 'cluster3+replicas')


def command_medians(runs):
    """Per Redis command: the medians over `runs` of its calls and µs per push (or cycle), for
    the commands every run has."""
    cmds = {}
    for x in runs:
        for c, (calls, usec) in x.get('commands', {}).items():
            cmds.setdefault(c, []).append((calls, usec))
    return {c: [statistics.median(v[0] for v in vs), statistics.median(v[1] for v in vs)]
            for c, vs in cmds.items() if len(vs) == len(runs)}


def free_port(used):
    """A port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            p = s.getsockname()[1]
        if p + 10000 > 65535 or p in used or p + 10000 in used:
            continue
        try:
            with socket.socket() as s:
                s.bind(('127.0.0.1', p + 10000))
        except OSError:
            continue
        used.update({p, p + 10000})
        return p
    raise RuntimeError('no free port')


def cli(port, *args, check=True):
    r = subprocess.run(['redis-cli', '-h', '127.0.0.1', '-p', str(port), *args],
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f'redis-cli -p {port} {" ".join(args)}: {r.stderr.strip()}')
    return r.stdout


def info(port, section):
    out = {}
    for line in cli(port, 'INFO', section).splitlines():
        if ':' in line and not line.startswith('#'):
            k, v = line.strip().split(':', 1)
            out[k] = v
    return out


def commandstats(port):
    """{command: [calls, usec]} from INFO commandstats."""
    out = {}
    for k, v in info(port, 'commandstats').items():
        if not k.startswith('cmdstat_'):
            continue
        f = dict(kv.split('=', 1) for kv in v.split(','))
        out[k[len('cmdstat_'):]] = [int(f['calls']), int(f['usec'])]
    return out


def user_sys(port):
    """INFO cpu: the server's user and system CPU seconds so far (whole process)."""
    c = info(port, 'cpu')
    return float(c['used_cpu_user']), float(c['used_cpu_sys'])


def ctxt_switches(pid):
    """(voluntary, involuntary) context switches of every thread of pid so far."""
    vol = invol = 0
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            for line in open(f'/proc/{pid}/task/{tid}/status'):
                if line.startswith('voluntary_ctxt_switches:'):
                    vol += int(line.split()[1])
                elif line.startswith('nonvoluntary_ctxt_switches:'):
                    invol += int(line.split()[1])
        except FileNotFoundError:
            pass
    return vol, invol


def cpu_seconds(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ  # utime, stime (fields 14 and 15)


class Topology:
    """Redis nodes on loopback: self.nodes = [{port, pid, role, shard}], self.pushd_flag."""

    def __init__(self, name, root):
        self.name = name
        self.dir = os.path.join(root, name.replace('+', '_'))
        os.makedirs(self.dir)
        self.procs = []
        self.nodes = []

    def start(self, used_ports):
        name = self.name
        if name == 'none':  # pushd in memory: no node, no flag
            self.pushd_flag = ''
            return
        cluster = name.startswith('cluster')
        replicas = name.endswith('+replicas') or name.endswith('+replica')
        shards = 1 if name == 'cluster1' else 3
        count = (6 if replicas else shards) if cluster else (2 if replicas else 1)
        ports = [free_port(used_ports) for _ in range(count)]
        for i, port in enumerate(ports):
            d = os.path.join(self.dir, str(port))
            os.makedirs(d)
            args = ['redis-server', '--port', str(port), '--bind', '127.0.0.1', '--save', '',
                    '--appendonly', 'no', '--dir', d, '--logfile', os.path.join(d, 'log')]
            if cluster:
                args += ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
                         '--cluster-node-timeout', '5000']
            elif i == 1:
                args += ['--replicaof', '127.0.0.1', str(ports[0])]
            self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        for port in ports:
            self._wait(lambda p=port: cli(p, 'PING', check=False).strip() == 'PONG', 'PING')
        if cluster:
            if shards == 1:
                # redis-cli --cluster create wants 3 primaries: one node takes every slot itself.
                cli(ports[0], 'CLUSTER', 'ADDSLOTSRANGE', '0', '16383')
            else:
                cli(ports[0], '--cluster', 'create', *[f'127.0.0.1:{p}' for p in ports],
                    '--cluster-replicas', '1' if replicas else '0', '--cluster-yes')
            for port in ports:
                self._wait(lambda p=port: 'cluster_state:ok' in cli(p, 'CLUSTER', 'INFO'),
                           'cluster_state:ok')
            self.pushd_flag = '--redis_cluster=' + ','.join(
                f'127.0.0.1:{p}' for p in ports[:shards])
        else:
            self.pushd_flag = f'--redis=redis://127.0.0.1:{ports[0]}'
        primaries = []
        for port, proc in zip(ports, self.procs):
            rep = info(port, 'replication')
            node = {'port': port, 'pid': proc.pid, 'role': rep['role'], 'shard': None}
            if rep['role'] == 'master':
                node['shard'] = len(primaries)
                primaries.append(port)
            self.nodes.append(node)
        for node in self.nodes:
            if node['role'] != 'master':
                master = int(info(node['port'], 'replication')['master_port'])
                node['shard'] = primaries.index(master)
                self._wait(lambda p=node['port']: info(p, 'replication').get(
                    'master_link_status') == 'up', 'replica link up')

    def _wait(self, ready, what, seconds=30):
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                if ready():
                    return
            except (RuntimeError, KeyError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.2)
        raise RuntimeError(f'{self.name}: no {what} after {seconds} s')

    def reset(self):
        for n in self.nodes:
            if n['role'] == 'master':
                cli(n['port'], 'FLUSHALL')
        # The replicas replay the flush before the run starts.
        for n in self.nodes:
            if n['role'] != 'master':
                self._wait(lambda p=n['port']: int(info(p, 'keyspace').get('db0', 'keys=0').split(
                    ',')[0].split('=')[1]) == 0, 'empty replica')
        for n in self.nodes:
            cli(n['port'], 'CONFIG', 'RESETSTAT')

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_once(bench, flags, name, topo, pushd, extra, quiet_limit):
    # Words --bench:FLAG of a build are pushbench flags of its own (after the common ones: the
    # last of a flag given twice wins).
    flags = ' '.join([flags] + [w[len('--bench:'):] for w in extra if w.startswith('--bench:')])
    extra = [w for w in extra if not w.startswith('--bench:')]
    # Until the machine has been < 15% busy for 2 s.
    waited = wait_quiet(quiet_limit, window_s=2, busy_below=0.15, warn=False) if quiet_limit > 0 else 0
    topo.reset()
    load1 = float(open('/proc/loadavg').read().split()[0])
    pids = [n['pid'] for n in topo.nodes]
    redis0 = {pid: cpu_seconds(pid) for pid in pids}
    split0 = {n['port']: user_sys(n['port']) for n in topo.nodes}
    ctx0 = {pid: ctxt_switches(pid) for pid in pids}
    children0 = os.times()
    b0, t0 = busy_and_total()
    cmd = [bench, f'--pushd={pushd}',
           '--pushd_args=' + ' '.join(w for w in [topo.pushd_flag, *extra] if w),
           *(['--watch_pids=' + ','.join(map(str, pids))] if pids else []), *shlex.split(flags)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    b1, t1 = busy_and_total()
    children1 = os.times()
    redis_all = sum(cpu_seconds(pid) - redis0[pid] for pid in pids)
    ours = (children1.children_user - children0.children_user + children1.children_system -
            children0.children_system) + redis_all
    busy = (b1 - b0) / HZ
    # Both cores' ticks: what other processes took, as a fraction of the machine over the run.
    foreign = max(0.0, busy - ours) / max(1e-9, (t1 - t0) / HZ)
    line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else '{}'
    try:
        bench_json = json.loads(line)
    except json.JSONDecodeError:
        bench_json = {'ok': False, 'errors': ['no JSON line: ' + proc.stderr[-500:]]}
    watched = {w['pid']: w['cpu_seconds'] for w in bench_json.get('watched', [])}
    nodes = []
    for n in topo.nodes:
        st = info(n['port'], 'stats')
        u1, s1 = user_sys(n['port'])
        u0, s0 = split0[n['port']]
        v1, i1 = ctxt_switches(n['pid'])
        v0, i0 = ctx0[n['pid']]
        nodes.append({**n, 'cpu_seconds': watched.get(n['pid']),
                      'run_user_s': u1 - u0, 'run_sys_s': s1 - s0,
                      'run_voluntary_switches': v1 - v0, 'run_involuntary_switches': i1 - i0,
                      'commandstats': commandstats(n['port']),
                      'stats': {k: int(st[k]) for k in STATS if k in st}})
    return {'name': name, 'topology': topo.name, 'pushd': pushd, 'pushd_extra': extra,
            'flags': flags, 'time': time.strftime('%Y-%m-%d %H:%M:%S'), 'load1': load1,
            'quiet_wait_s': round(waited, 1), 'foreign_cpu': round(foreign, 3),
            'exit': proc.returncode, 'bench': bench_json, 'redis': nodes,
            # pushd's warnings and errors (it inherits pushbench's stderr), the last 4 KB.
            'stderr_tail': proc.stderr[-4096:]}


def derive_churn(r):
    """The figures of one churn run: per connect+disconnect cycle over the measured window."""
    b = r['bench']
    c = b.get('churn') or {}
    cycles = c.get('cycles') or 0
    out = {'ok': b.get('ok'), 'pushes': cycles, 'cycles': cycles,
           'cycles_per_s': c.get('cycles_per_s'), 'load1': r['load1'],
           'foreign_cpu': r['foreign_cpu'], 'pushd_us_per_cycle': c.get('server_us_per_cycle'),
           'late': c.get('late'), 'welcome_p50_ms': (c.get('welcome_ms') or {}).get('p50'),
           'welcome_p99_ms': (c.get('welcome_ms') or {}).get('p99'),
           'watchers': c.get('watchers'), 'lost': 0, 'duplicated': 0, 'reordered': 0}
    if cycles and c.get('events') is not None:
        out['events_per_cycle'] = c['events'] / cycles
    ww = c.get('watchers_window') or []
    if cycles and ww:
        out['online_per_cycle'] = ww[0]['online'] / cycles
        out['watcher_events_per_cycle'] = statistics.mean(w['events'] for w in ww) / cycles
    if cycles and r['redis'] and all(n['cpu_seconds'] is not None for n in r['redis']):
        out['redis_us_per_cycle'] = sum(n['cpu_seconds'] for n in r['redis']) * 1e6 / cycles
        prim = [n for n in r['redis'] if n['role'] == 'master']
        # Commandstats and INFO stats cover the whole run (warm-up, window, the end): per cycle
        # of the whole run.
        cycles = c.get('done') or cycles
        cs = {}
        for n in prim:
            for cmd, (calls, usec) in n['commandstats'].items():
                x = cs.setdefault(cmd, [0, 0])
                x[0] += calls
                x[1] += usec
        out['commands'] = {k: [v[0] / cycles, v[1] / cycles] for k, v in cs.items()}
        for k, short in (('total_reads_processed', 'reads_per_cycle'),
                         ('total_commands_processed', 'commands_per_cycle')):
            if all(k in n.get('stats', {}) for n in prim):
                out[short] = sum(n['stats'][k] for n in prim) / cycles
    return out


def derive(r):
    """The figures of one run."""
    b = r['bench']
    if b.get('scenario') == 'churn':
        return derive_churn(r)
    pushes = b.get('pushes_ok') or 0
    delivered = b.get('delivered') or 0
    out = {'ok': b.get('ok'), 'pushes': pushes, 'delivered': delivered,
           'delivered_per_s': b.get('delivered_per_s'), 'lost': b.get('lost'),
           'duplicated': b.get('duplicated'), 'reordered': b.get('reordered'),
           'load1': r['load1'], 'foreign_cpu': r['foreign_cpu']}
    lat = b.get('latency_ms') or {}
    rpc = b.get('rpc_latency_ms') or {}
    out.update({'p50_ms': lat.get('p50'), 'p99_ms': lat.get('p99'), 'rpc_p50_ms': rpc.get('p50'),
                'rpc_p99_ms': rpc.get('p99')})
    server = b.get('server') or {}
    if delivered and server.get('cpu_seconds') is not None:
        out['pushd_us_per_delivery'] = server['cpu_seconds'] * 1e6 / delivered
    if pushes and all(n['cpu_seconds'] is not None for n in r['redis']):
        prim = [n for n in r['redis'] if n['role'] == 'master']
        reps = [n for n in r['redis'] if n['role'] != 'master']
        total_prim = sum(n['cpu_seconds'] for n in prim)
        out['redis_us_per_push'] = sum(n['cpu_seconds'] for n in r['redis']) * 1e6 / pushes
        out['primaries_us_per_push'] = total_prim * 1e6 / pushes
        for n in sorted(prim, key=lambda n: n['shard']):
            out[f'shard{n["shard"]}_us_per_push'] = n['cpu_seconds'] * 1e6 / pushes
            out[f'shard{n["shard"]}_share'] = n['cpu_seconds'] / total_prim if total_prim else None
        if all('run_sys_s' in n for n in prim):
            # INFO cpu over the whole pushbench run (connects included): the kernel's share.
            tot = sum(n['run_sys_s'] + n['run_user_s'] for n in prim)
            out['primaries_sys_share'] = sum(n['run_sys_s'] for n in prim) / tot if tot else None
        if all('run_voluntary_switches' in n for n in prim):
            # Whole pushbench run: how often the primaries slept (woke up) and were preempted.
            out['sleeps_per_push'] = sum(n['run_voluntary_switches'] for n in prim) / pushes
            out['preemptions_per_push'] = sum(n['run_involuntary_switches'] for n in prim) / pushes
        if reps:
            out['replicas_us_per_push'] = sum(n['cpu_seconds'] for n in reps) * 1e6 / pushes
        # Commandstats cover the whole run (connects included): calls and usec per push.
        cs = {}
        for n in prim:
            for cmd, (calls, usec) in n['commandstats'].items():
                c = cs.setdefault(cmd, [0, 0])
                c[0] += calls
                c[1] += usec
        out['commands'] = {k: [v[0] / pushes, v[1] / pushes] for k, v in cs.items()}
        # Per push, primaries together: socket reads and writes, commands (top level).
        for k, short in (('total_reads_processed', 'reads_per_push'),
                         ('total_writes_processed', 'writes_per_push'),
                         ('total_commands_processed', 'commands_per_push')):
            if all(k in n.get('stats', {}) for n in prim):
                out[short] = sum(n['stats'][k] for n in prim) / pushes
    return out


def keep(r, max_foreign):
    """A run counts when the machine was ours and a fixed-rate run kept its rate."""
    b = r['bench']
    if not b.get('ok') or r['foreign_cpu'] > max_foreign:
        return False
    if b.get('scenario') == 'churn':
        c = b.get('churn') or {}
        rate = c.get('rate') or 0
        return rate <= 0 or (c.get('cycles') or 0) >= 0.98 * rate * (c.get('window_seconds') or 0)
    def last(flag):
        found = re.findall(r'--' + flag + r'=([0-9a-z.]+)', r['flags'])
        return found[-1] if found else None
    rate, duration = last('rate'), last('duration')
    if rate and float(rate) > 0 and duration:
        per_call = int(last('batch') or 100) if last('mode') == 'broadcast' else 1
        want = float(rate) * float(duration) * per_call
        return (b.get('pushes_ok') or 0) >= 0.98 * want
    return True


def summarize(records):
    kept = [r for r in records if r.get('kept', True)]
    if len(kept) < len(records):
        print(f'({len(records) - len(kept)} of {len(records)} runs discarded: machine busy or '
              'rate not kept)')
    records = kept
    order = []
    by_name = {}
    for r in records:
        if r['name'] not in by_name:
            order.append(r['name'])
        by_name.setdefault(r['name'], []).append(derive(r))
    keys = ['delivered_per_s', 'redis_us_per_push', 'primaries_us_per_push', 'replicas_us_per_push',
            'shard0_us_per_push', 'shard1_us_per_push', 'shard2_us_per_push', 'shard0_share',
            'shard1_share', 'shard2_share', 'pushd_us_per_delivery', 'p50_ms', 'p99_ms',
            'rpc_p50_ms', 'rpc_p99_ms', 'primaries_sys_share', 'sleeps_per_push',
            'preemptions_per_push', 'reads_per_push', 'writes_per_push', 'commands_per_push',
            'load1', 'foreign_cpu']
    print(f'--- medians (runs per build: {", ".join(f"{n} {len(by_name[n])}" for n in order)})')
    if records and records[0]['bench'].get('scenario') == 'churn':
        return summarize_churn(order, by_name)
    summary = {}
    for name in order:
        runs = by_name[name]
        med = {}
        for k in keys:
            vals = [x[k] for x in runs if x.get(k) is not None]
            if vals:
                med[k] = statistics.median(vals)
        med['runs'] = len(runs)
        med['all_ok'] = all(x['ok'] for x in runs)
        med['lost'] = sum(x['lost'] or 0 for x in runs)
        med['duplicated'] = sum(x['duplicated'] or 0 for x in runs)
        med['reordered'] = sum(x['reordered'] or 0 for x in runs)
        med['pushes'] = statistics.median([x['pushes'] for x in runs])
        med['commands'] = command_medians(runs)
        summary[name] = med

        def f(k, fmt='{:.1f}'):
            return fmt.format(med[k]) if k in med else '-'
        shards = ' '.join(f('shard%d_us_per_push' % i) + '(' + f('shard%d_share' % i, '{:.2f}') + ')'
                          for i in range(3) if f'shard{i}_us_per_push' in med)
        print(f'{name}: {f("delivered_per_s", "{:.0f}")} deliv/s; Redis {f("redis_us_per_push")}'
              f' us/push (primaries {f("primaries_us_per_push")}, replicas '
              f'{f("replicas_us_per_push")}; per primary {shards}); pushd '
              f'{f("pushd_us_per_delivery")} us/deliv; latency p50/p99 {f("p50_ms", "{:.2f}")}/'
              f'{f("p99_ms", "{:.2f}")} ms, Push rpc {f("rpc_p50_ms", "{:.2f}")}/'
              f'{f("rpc_p99_ms", "{:.2f}")} ms; primaries: reads/push {f("reads_per_push", "{:.2f}")}, '
              f'writes/push {f("writes_per_push", "{:.2f}")}, sleeps/push '
              f'{f("sleeps_per_push", "{:.2f}")}, preemptions/push '
              f'{f("preemptions_per_push", "{:.3f}")}, system CPU share '
              f'{f("primaries_sys_share", "{:.2f}")}; load {f("load1", "{:.2f}")}, foreign '
              f'{f("foreign_cpu", "{:.3f}")}; {med["pushes"]:.0f} pushes; ok {med["all_ok"]}, lost '
              f'{med["lost"]}, dup {med["duplicated"]}, reordered {med["reordered"]}')
    print(json.dumps({'summary': summary}))


def summarize_churn(order, by_name):
    keys = ['cycles_per_s', 'pushd_us_per_cycle', 'redis_us_per_cycle', 'events_per_cycle',
            'watcher_events_per_cycle', 'online_per_cycle', 'welcome_p50_ms', 'welcome_p99_ms',
            'reads_per_cycle', 'commands_per_cycle', 'load1', 'foreign_cpu']
    summary = {}
    for name in order:
        runs = by_name[name]
        med = {'runs': len(runs), 'all_ok': all(x['ok'] for x in runs)}
        for k in keys:
            vals = sorted(x[k] for x in runs if x.get(k) is not None)
            if vals:
                med[k] = statistics.median(vals)
                med[k + '_range'] = [vals[0], vals[-1]]
        med['commands'] = command_medians(runs)
        summary[name] = med

        def f(k, fmt='{:.1f}'):
            if k not in med:
                return '-'
            lo, hi = med[k + '_range']
            return fmt.format(med[k]) + ' (' + fmt.format(lo) + '-' + fmt.format(hi) + ')'
        print(f'{name}: {f("cycles_per_s", "{:.0f}")} cycles/s; pushd {f("pushd_us_per_cycle")} '
              f'us/cycle; Redis {f("redis_us_per_cycle")} us/cycle; events/cycle '
              f'{f("events_per_cycle", "{:.3f}")}, read per watcher '
              f'{f("watcher_events_per_cycle", "{:.3f}")}, ONLINE/cycle '
              f'{f("online_per_cycle", "{:.3f}")}; welcome p50/p99 '
              f'{f("welcome_p50_ms", "{:.2f}")}/{f("welcome_p99_ms", "{:.2f}")} ms; load '
              f'{f("load1", "{:.2f}")}, foreign {f("foreign_cpu", "{:.3f}")}; ok {med["all_ok"]}')
    print(json.dumps({'summary': summary}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--out')
    ap.add_argument('--bench', default='build/tools/pushbench/pushbench')
    ap.add_argument('--topologies', default='')
    ap.add_argument('--quiet', type=float, default=60,
                    help='wait up to this many seconds for a quiet machine before each run')
    ap.add_argument('--max_foreign', type=float, default=0.15,
                    help='discard (and repeat, up to 3 tries per run) a run in which other '
                         'processes took more than this fraction of the machine, or which pushed '
                         'under 98%% of its --rate')
    ap.add_argument('--summary', help='print the medians of an --out file and exit (runs kept '
                                      'or not by --max_foreign again)')
    ap.add_argument('flags', nargs='?')
    ap.add_argument('builds', nargs='*')
    a = ap.parse_args()
    if a.summary:
        records = [json.loads(line) for line in open(a.summary) if line.strip()]
        for r in records:
            r['kept'] = keep(r, a.max_foreign)
        summarize(records)
        return
    if not a.flags or not a.builds or not a.topologies:
        ap.error('need --topologies, the pushbench flags and at least one build')
    builds = []
    topo_names = a.topologies.split(',')
    for spec in a.builds:
        name, rest = spec.split('=', 1)
        topo, cmd = rest.split(':', 1)
        words = cmd.split()
        if topo not in topo_names or topo not in TOPOLOGIES:
            ap.error(f'{spec}: topology {topo} not among --topologies')
        builds.append((name, topo, words[0], words[1:]))
    root = tempfile.mkdtemp(prefix='redis_cpu.')
    topos = {}
    records = []

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        used = set()
        for t in topo_names:
            topos[t] = Topology(t, root)
            topos[t].start(used)
            roles = ', '.join(f'{n["port"]} {n["role"]} shard {n["shard"]}' for n in topos[t].nodes)
            print(f'{t}: {roles}', flush=True)
        for i in range(a.runs):
            for name, topo, pushd, extra in builds:
                for attempt in range(3):
                    r = run_once(a.bench, a.flags, name, topos[topo], pushd, extra, a.quiet)
                    r['round'] = i + 1
                    r['kept'] = keep(r, a.max_foreign)
                    records.append(r)
                    d = derive(r)
                    print(json.dumps({'name': name, 'round': i + 1, 'kept': r['kept'],
                                      **{k: v for k, v in d.items() if k != 'commands'}}),
                          flush=True)
                    if a.out:
                        with open(a.out, 'a') as f:
                            f.write(json.dumps(r) + '\n')
                    if r['kept']:
                        break
    finally:
        for t in topos.values():
            t.stop()
        shutil.rmtree(root, ignore_errors=True)
    summarize(records)


if __name__ == '__main__':
    main()
