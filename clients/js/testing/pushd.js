// Test helpers: a real pushd process on 127.0.0.1 with ephemeral ports, pushes through gRPC
// (the pushctl CLI) or the development route POST /demo/push, and bounded waits.
// Shared by clients/js/test and tests/browser.

import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

function binary(envName, relative) {
  const fromEnv = process.env[envName];
  if (fromEnv) return fromEnv;
  for (const dir of [process.env.BUILD_DIR, 'build'].filter(Boolean)) {
    const candidate = resolve(repo, dir, relative);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`${relative} not found: build pushd first or set ${envName}`);
}

export const PUSHD = () => binary('PUSHD_BINARY', 'services/pushd');
export const PUSHCTL = () => binary('PUSHCTL_BINARY', 'tools/pushctl');

// The first line of an AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer report.
const SANITIZER_REPORT = /ERROR: (Address|Leak)Sanitizer|runtime error: /;

/** Starts pushd on loopback with ports 0 and waits (bounded) for its ready line. */
export async function startPushd(extraArgs = [], { readyTimeout = 15000 } = {}) {
  const args = [
    '--grpc_listen=127.0.0.1:0',
    '--ws_listen=127.0.0.1:0',
    '--drain_timeout=2s',
    '--log_level=warn',
    ...extraArgs,
  ];
  const proc = spawn(PUSHD(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((res) => proc.once('exit', (code, signal) => res({ code, signal })));
  const ports = await new Promise((res, rej) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      rej(new Error(`pushd not ready within ${readyTimeout} ms; stderr:\n${stderr}`));
    }, readyTimeout);
    proc.stdout.on('data', (d) => {
      stdout += d;
      const m = /pushd ready grpc_port=(\d+) ws_port=(\d+)/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        res({ grpcPort: Number(m[1]), wsPort: Number(m[2]) });
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      rej(new Error(`pushd exited (${code ?? signal}) before ready; stderr:\n${stderr}`));
    });
  });
  const server = {
    ...ports,
    proc,
    grpcAddr: `127.0.0.1:${ports.grpcPort}`,
    httpBase: `http://127.0.0.1:${ports.wsPort}`,
    wsUrl: `ws://127.0.0.1:${ports.wsPort}/ws`,
    stderr: () => stderr,
    /**
     * SIGTERM, then SIGKILL if it has not exited within the bound. Throws when pushd (built with
     * PUSHD_SANITIZE=ON) reported a sanitizer error, so the test fails with the report.
     */
    async stop(timeout = 5000) {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), timeout);
        await exited;
        clearTimeout(timer);
      }
      const result = await exited;
      if (SANITIZER_REPORT.test(stderr)) {
        throw new Error(`pushd reported a sanitizer error; its stderr:\n${stderr}`);
      }
      return result;
    },
  };
  return server;
}

/** Runs pushctl against the server; resolves with stdout, rejects with its error. */
export function pushctl(server, args, { timeout = 10000 } = {}) {
  return new Promise((res, rej) => {
    execFile(
      PUSHCTL(),
      [args[0], '--addr', server.grpcAddr, ...args.slice(1)],
      { timeout },
      (error, stdout, stderr) => {
        if (error) {
          error.message += `\n${stderr}`;
          rej(error);
        } else {
          res(stdout);
        }
      },
    );
  });
}

/** A real gRPC Push through pushctl: { messageId, seq, delivered }. */
export async function grpcPush(server, userId, data) {
  const out = await pushctl(server, ['push', '--user', userId, '--data', JSON.stringify(data)]);
  const m = /pushed message_id=(\S+) seq=(\d+) delivered=(\d+)/.exec(out);
  if (!m) throw new Error(`unexpected pushctl output: ${out}`);
  return { messageId: m[1], seq: Number(m[2]), delivered: Number(m[3]) };
}

/** A Push through POST /demo/push (same PushLogic as gRPC): { message_id, seq, delivered }. */
export async function demoPush(server, userId, data) {
  const res = await fetch(`${server.httpBase}/demo/push?user_id=${encodeURIComponent(userId)}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: typeof data === 'string' ? data : JSON.stringify(data),
    signal: AbortSignal.timeout(10000),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`demo push ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

/** Polls `predicate` every 20 ms until it is truthy or `timeout` ms pass (then throws). */
export async function waitFor(predicate, { timeout = 10000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Counts the user's live connections as the server sees them (ListClients). */
export async function liveConnections(server, userId) {
  const out = await pushctl(server, ['list', '--user', userId]);
  const m = /total: (\d+) connection/.exec(out);
  if (!m) throw new Error(`unexpected pushctl list output: ${out}`);
  return Number(m[1]);
}

/**
 * Kills the server's side of every established TCP connection on its WebSocket port, as a
 * crashed peer or a dropped network would: no close frame, the client sees 1006. Needs root
 * (ss -K, SOCK_DESTROY); returns how many sockets were killed.
 */
export function killConnections(server) {
  return new Promise((res, rej) => {
    execFile(
      'ss',
      ['-K', '-t', '-n', 'state', 'established', `( sport = :${server.wsPort} )`],
      { timeout: 5000 },
      (error, stdout, stderr) => {
        if (error) {
          rej(new Error(`ss -K failed: ${stderr || error.message}`));
          return;
        }
        res(stdout.split('\n').filter((l) => l.includes(`:${server.wsPort} `)).length);
      },
    );
  });
}

export const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;
