// pushclient.js against a real pushd on 127.0.0.1 (ephemeral ports), with real pushes through
// gRPC (pushctl) and the development route /demo/push. WebSocket is the `ws` package, since
// Node 20 has no global WebSocket.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';

import { PushClient, checkToken, defaultShouldReconnect } from '../pushclient.js';
import {
  demoPush,
  grpcPush,
  isRoot,
  killConnections,
  liveConnections,
  pushctl,
  sleep,
  startPushd,
  waitFor,
} from '../testing/pushd.js';

let userCounter = 0;
const newUser = (name) => `${name}-${process.pid}-${++userCounter}`;

function jwt(payload, header = { alg: 'HS256', typ: 'JWT' }) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${enc(header)}.${enc(payload)}.c2lnbmF0dXJl`;
}

// A WebSocket that records the URLs it opened and the frames the client sent.
function recordingWebSocket(log, { duplicateMessages = false } = {}) {
  return class RecordingWebSocket extends WebSocket {
    constructor(url, ...rest) {
      super(url, ...rest);
      log.urls.push(url);
    }
    send(data) {
      log.sent.push(JSON.parse(data));
      super.send(data);
    }
    set onmessage(fn) {
      if (!duplicateMessages) {
        super.onmessage = fn;
        return;
      }
      // Hand every message frame over twice and repeat the previous one after it, as a buggy
      // proxy or transport might: the application must still see each seq once, in order.
      let previous = null;
      super.onmessage = (event) => {
        fn(event);
        if (JSON.parse(event.data).type !== 'message') return;
        fn(event);
        if (previous) fn(previous);
        previous = event;
      };
    }
    get onmessage() {
      return super.onmessage;
    }
  };
}

// Everything a client emits, for assertions.
function track(client) {
  const t = { messages: [], gaps: [], states: [], errors: [], welcomes: [], resets: [] };
  client.on('message', (m) => t.messages.push(m));
  client.on('gap', (g) => t.gaps.push(g));
  client.on('state', (s) => t.states.push(s));
  client.on('error', (e) => t.errors.push(e));
  client.on('welcome', (w) => t.welcomes.push(w));
  client.on('reset', (r) => t.resets.push(r));
  t.seqs = () => t.messages.map((m) => m.seq);
  t.stateNames = () => t.states.map((s) => s.state);
  t.waitState = (state, what = state, from = 0) =>
    waitFor(() => t.states.slice(from).find((s) => s.state === state), { what: `state ${what}` });
  return t;
}

describe('PushClient against a real pushd', () => {
  let server;
  const clients = [];
  const newClient = (options) => {
    const client = new PushClient({ url: server.wsUrl, WebSocket, ...options });
    clients.push(client);
    return client;
  };

  before(async () => {
    server = await startPushd();
  });
  after(async () => {
    for (const c of clients) c.close();
    await server?.stop();
  });

  test('delivers a gRPC push live with seq, id, ts and the data as pushed', async () => {
    const user = newUser('live');
    const client = newClient({ userId: user });
    const t = track(client);
    client.connect();
    await waitFor(() => t.welcomes.length === 1, { what: 'welcome' });
    assert.deepEqual(t.stateNames(), ['connecting', 'open']);
    assert.equal(t.welcomes[0].userId, user);
    assert.equal(t.welcomes[0].seq, 0);
    assert.match(client.connectionId, /.+/);

    const before = Date.now();
    const pushed = await grpcPush(server, user, { hello: 'world', n: [1, 2.5, null] });
    assert.equal(pushed.seq, 1);
    assert.equal(pushed.delivered, 1);
    await waitFor(() => t.messages.length === 1, { what: 'message 1' });
    const [m] = t.messages;
    assert.equal(m.seq, 1);
    assert.equal(m.id, pushed.messageId);
    assert.deepEqual(m.data, { hello: 'world', n: [1, 2.5, null] });
    assert.ok(m.ts >= before - 1000 && m.ts <= Date.now() + 1000, `ts ${m.ts} is now`);
    assert.equal(client.lastSeq, 1);

    client.close();
    assert.equal(client.state, 'closed');
    await waitFor(async () => (await liveConnections(server, user)) === 0, { what: 'no connection' });
    const later = await demoPush(server, user, { after: 'close' });
    assert.equal(later.delivered, 0, 'a closed client does not reconnect');
    assert.deepEqual(t.seqs(), [1]);
  });

  test('first connect replays what waited offline (from the delivered cursor)', async () => {
    const user = newUser('offline');
    await demoPush(server, user, { n: 1 });
    await demoPush(server, user, { n: 2 });
    const log = { urls: [], sent: [] };
    const client = newClient({ userId: user, WebSocket: recordingWebSocket(log) });
    const t = track(client);
    client.connect();
    await waitFor(() => t.messages.length === 2, { what: 'two replayed messages' });
    assert.deepEqual(t.seqs(), [1, 2]);
    assert.deepEqual(
      t.messages.map((m) => m.data),
      [{ n: 1 }, { n: 2 }],
    );
    const url = new URL(log.urls[0]);
    assert.equal(url.pathname, '/ws');
    assert.equal(url.searchParams.get('user_id'), user);
    assert.equal(url.searchParams.has('since'), false, 'no since before any seq is known');
    assert.equal(url.searchParams.has('ack'), false);
  });

  test('after the server kills the connection it reconnects with since and gets what it missed, once', async (t_) => {
    if (!isRoot()) {
      t_.skip('needs root to kill sockets with ss -K');
      return;
    }
    const user = newUser('killed');
    const log = { urls: [], sent: [] };
    // A long enough first delay (4 to 8 s with jitter) that the pushes below land while the client
    // is away, even under the sanitizers on a busy machine (1.5 s was once too short there).
    const client = newClient({ userId: user, WebSocket: recordingWebSocket(log), minDelay: 8000 });
    const t = track(client);
    client.connect();
    await t.waitState('open');
    await waitFor(() => t.welcomes.length === 1, { what: 'welcome' });
    await demoPush(server, user, { n: 1 });
    await waitFor(() => t.messages.length === 1, { what: 'message 1' });

    assert.ok((await killConnections(server)) >= 1, 'ss -K killed the connection');
    const reconnecting = await t.waitState('reconnecting');
    assert.equal(reconnecting.code, 1006);
    assert.ok(reconnecting.delay >= 4000 && reconnecting.delay <= 8000, `delay ${reconnecting.delay}`);
    await waitFor(async () => (await liveConnections(server, user)) === 0, { what: 'server saw the drop' });
    const p2 = await grpcPush(server, user, { n: 2 });
    const p3 = await demoPush(server, user, { n: 3 });
    assert.equal(p2.delivered, 0, 'pushed while the client was away');
    assert.equal(p3.delivered, 0, 'pushed while the client was away');

    await waitFor(() => t.messages.length >= 3, {
      what: 'messages 2 and 3 after reconnect',
      timeout: 20000,
    });
    assert.equal(new URL(log.urls[1]).searchParams.get('since'), '1');
    await demoPush(server, user, { n: 4 });
    await waitFor(() => t.messages.length >= 4, { what: 'live message 4' });
    await sleep(100);
    assert.deepEqual(t.seqs(), [1, 2, 3, 4]);
    assert.deepEqual(
      t.messages.map((m) => m.data.n),
      [1, 2, 3, 4],
    );
    assert.equal(client.stats.connects, 2);
  });

  test('deviceId: device_id= on every connection (since too after a reconnect), and the welcome names the device', async (t_) => {
    const user = newUser('device');
    const device = 'phone-1.a:B_c';
    const log = { urls: [], sent: [] };
    const client = newClient({
      userId: user,
      deviceId: device,
      WebSocket: recordingWebSocket(log),
      minDelay: 50,
      maxDelay: 200,
    });
    const t = track(client);
    assert.equal(client.deviceId, device);
    client.connect();
    await waitFor(() => t.welcomes.length === 1, { what: 'welcome' });
    const first = new URL(log.urls[0]).searchParams;
    assert.equal(first.get('device_id'), device);
    assert.equal(first.get('user_id'), user);
    assert.equal(first.has('since'), false);
    await grpcPush(server, user, { n: 1 });
    await waitFor(() => t.messages.length === 1, { what: 'message 1' });

    // A reconnect the backend asks for: the same device, now resuming with since.
    await pushctl(server, ['delete', '--user', user, '--reason', 'reconnect']);
    await waitFor(() => t.welcomes.length === 2, { what: 'second welcome' });
    const second = new URL(log.urls[1]).searchParams;
    assert.equal(second.get('device_id'), device);
    assert.equal(second.get('since'), '1');

    // Without the option: no device_id, and the welcome says no device.
    const plainLog = { urls: [], sent: [] };
    const plain = newClient({ userId: user, WebSocket: recordingWebSocket(plainLog) });
    const tp = track(plain);
    assert.equal(plain.deviceId, null);
    plain.connect();
    await waitFor(() => tp.welcomes.length === 1, { what: 'welcome without a device' });
    assert.equal(new URL(plainLog.urls[0]).searchParams.has('device_id'), false);
    assert.equal(tp.welcomes[0].deviceId, null);

    assert.equal(t.welcomes[0].deviceId, device);
    assert.equal(t.welcomes[1].deviceId, device);
  });

  test("DeleteClient with reason 'reconnect' brings it back; a plain DeleteClient (1000 deleted) ends it", async () => {
    const user = newUser('deleted');
    const client = newClient({ userId: user, minDelay: 50, maxDelay: 200 });
    const t = track(client);
    client.connect();
    await waitFor(() => t.welcomes.length === 1, { what: 'welcome' });

    await pushctl(server, ['delete', '--user', user, '--reason', 'reconnect']);
    const r = await t.waitState('reconnecting');
    assert.equal(r.code, 1000);
    assert.equal(r.reason, 'reconnect');
    await waitFor(() => t.welcomes.length === 2, { what: 'second welcome' });
    await demoPush(server, user, { n: 1 });
    await waitFor(() => t.messages.length === 1, { what: 'message after reconnect' });

    const mark = t.states.length;
    await pushctl(server, ['delete', '--user', user]);
    const closed = await t.waitState('closed', 'closed', mark);
    assert.equal(closed.code, 1000);
    assert.equal(closed.reason, 'deleted');
    await sleep(1000); // five times maxDelay: a reconnect would have happened by now
    assert.deepEqual(t.stateNames().slice(mark), ['closed']);
    assert.equal(await liveConnections(server, user), 0);
    assert.equal((await demoPush(server, user, { n: 2 })).delivered, 0);
    assert.equal(client.state, 'closed');
  });

  test('acks: with ack the delivered cursor moves only as far as the client acknowledged', async () => {
    const user = newUser('ack');
    await demoPush(server, user, { n: 1 });
    await demoPush(server, user, { n: 2 });

    // A acknowledges only seq 1 by hand.
    const logA = { urls: [], sent: [] };
    const a = newClient({ userId: user, ack: true, autoAck: false, WebSocket: recordingWebSocket(logA) });
    const ta = track(a);
    a.connect();
    await waitFor(() => ta.messages.length === 2, { what: 'A gets 1 and 2' });
    assert.equal(new URL(logA.urls[0]).searchParams.get('ack'), '1');
    assert.deepEqual(logA.sent, [], 'no automatic acks');
    assert.equal(a.ack(1), true);
    assert.deepEqual(logA.sent, [{ type: 'ack', seq: 1 }]);
    a.close();
    await waitFor(async () => (await liveConnections(server, user)) === 0, { what: 'A gone' });

    // B starts from the cursor: only 2 again; it acks automatically.
    const logB = { urls: [], sent: [] };
    const b = newClient({ userId: user, ack: true, WebSocket: recordingWebSocket(logB) });
    const tb = track(b);
    b.connect();
    await waitFor(() => tb.messages.length === 1 && logB.sent.length === 1, { what: 'B gets 2 and acks' });
    assert.deepEqual(tb.seqs(), [2]);
    assert.deepEqual(logB.sent, [{ type: 'ack', seq: 2 }]);
    await sleep(100); // let the ack reach the server before the close frame races it
    b.close();
    await waitFor(async () => (await liveConnections(server, user)) === 0, { what: 'B gone' });

    // C starts from the cursor, which B's ack moved to 2: no replay, only the live 3.
    const c = newClient({ userId: user });
    const tc = track(c);
    c.connect();
    await waitFor(() => tc.welcomes.length === 1, { what: 'C welcome' });
    assert.equal(tc.welcomes[0].seq, 2);
    await demoPush(server, user, { n: 3 });
    await waitFor(() => tc.messages.length === 1, { what: 'C gets 3' });
    await sleep(100);
    assert.deepEqual(tc.seqs(), [3]);
  });

  test('never hands a seq to the application twice, even when frames repeat', async () => {
    const user = newUser('dup');
    const log = { urls: [], sent: [] };
    const client = newClient({
      userId: user,
      WebSocket: recordingWebSocket(log, { duplicateMessages: true }),
    });
    const t = track(client);
    client.connect();
    await waitFor(() => t.welcomes.length === 1, { what: 'welcome' });
    for (let n = 1; n <= 3; n++) await demoPush(server, user, { n });
    await waitFor(() => client.stats.duplicatesDropped >= 5, { what: 'repeated frames' });
    assert.deepEqual(t.seqs(), [1, 2, 3]);
    assert.equal(client.lastSeq, 3);
  });

  test('a lastSeq beyond the stream (the store was reset) starts over and delivers the new stream', async () => {
    const user = newUser('reset');
    await demoPush(server, user, { n: 1 });
    await demoPush(server, user, { n: 2 });
    const log = { urls: [], sent: [] };
    const client = newClient({ userId: user, lastSeq: 50, WebSocket: recordingWebSocket(log) });
    const t = track(client);
    client.connect();
    await waitFor(() => t.messages.length === 2, { what: 'the new stream' });
    assert.equal(new URL(log.urls[0]).searchParams.get('since'), '50');
    assert.deepEqual(t.resets, [{ lastSeq: 50, seq: 2 }]);
    assert.deepEqual(t.seqs(), [1, 2]);
    assert.equal(client.lastSeq, 2);
  });

  test('token mode: token= instead of user_id; a refused handshake is reported with its status', async () => {
    const log = { urls: [], sent: [] };
    let calls = 0;
    const token = jwt({ sub: 'tom', exp: Math.floor(Date.now() / 1000) + 3600 });
    const client = newClient({
      token: () => {
        calls++;
        return token;
      },
      WebSocket: recordingWebSocket(log),
      minDelay: 50,
      maxDelay: 100,
    });
    const t = track(client);
    client.connect();
    // This pushd runs --auth=none, so it refuses a token without user_id (HTTP 400); a pushd
    // with --auth=jwt refuses a bad token with 401 the same way.
    const refused = await waitFor(() => t.errors.find((e) => e.kind === 'refused'), { what: 'refusal' });
    assert.equal(refused.status, 400);
    assert.match(refused.message, /refused the connection with HTTP 400: the token is bad or expired/);
    const reconnecting = await t.waitState('reconnecting');
    assert.equal(reconnecting.error.kind, 'refused');
    await waitFor(() => log.urls.length >= 2, { what: 'a retry' });
    client.close();
    assert.ok(calls >= 2, 'the token function is asked again for every attempt');
    const url = new URL(log.urls[0]);
    assert.equal(url.searchParams.get('token'), token);
    assert.equal(url.searchParams.has('user_id'), false);
    assert.equal(t.messages.length, 0);
  });

  test('token mode: a malformed or expired token is refused before any connection', async () => {
    for (const [token, pattern] of [
      ['not-a-jwt', /not a JWT \(expected three base64url parts/],
      [jwt({ sub: 'tom', exp: 1000 }), /token expired at 1970-01-01T00:16:40.000Z/],
    ]) {
      const log = { urls: [], sent: [] };
      const client = newClient({ token, WebSocket: recordingWebSocket(log) });
      const t = track(client);
      client.connect();
      await t.waitState('closed');
      assert.equal(t.errors.length, 1);
      assert.equal(t.errors[0].kind, 'token');
      assert.match(t.errors[0].message, pattern);
      assert.equal(t.states.at(-1).error.kind, 'token');
      assert.equal(log.urls.length, 0, 'no connection attempt');
      assert.equal(client.state, 'closed');
    }
  });

  test('refresh() keeps the new token for later connections and needs token mode', async () => {
    const client = newClient({ token: jwt({ sub: 'tom' }) });
    const fresh = jwt({ sub: 'tom', exp: Math.floor(Date.now() / 1000) + 60 });
    assert.equal(client.refresh(fresh), false, 'not sent: no open connection');
    assert.throws(() => client.refresh('nope'), /not a JWT/);
    const byUser = newClient({ userId: newUser('refresh') });
    assert.throws(() => byUser.refresh(fresh), /needs token mode/);
  });
});

describe('PushClient against pushd --auth=jwt', () => {
  const secret = 'browser-tests-secret-0123456789abcdef0123456789';
  let server;
  let dir;
  const clients = [];
  const newClient = (options) => {
    const client = new PushClient({ url: server.wsUrl, WebSocket, ...options });
    clients.push(client);
    return client;
  };
  const signed = (payload, key = secret) => {
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const input = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(payload)}`;
    return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`;
  };
  const nowS = () => Math.floor(Date.now() / 1000);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pushd-jwt-'));
    await writeFile(join(dir, 'secret'), secret);
    server = await startPushd([
      '--auth=jwt',
      `--jwt_hs256_secret_file=${join(dir, 'secret')}`,
      '--jwt_leeway=0s',
    ]);
  });
  after(async () => {
    for (const c of clients) c.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("a good token connects as its sub and gets the sub's pushes", async () => {
    const user = newUser('jwt');
    const log = { urls: [], sent: [] };
    const client = newClient({ token: signed({ sub: user, exp: nowS() + 600 }), WebSocket: recordingWebSocket(log) });
    const t = track(client);
    client.connect();
    await waitFor(() => t.welcomes.length === 1, { what: 'welcome' });
    assert.equal(client.userId, user);
    assert.equal(new URL(log.urls[0]).searchParams.has('user_id'), false);
    await grpcPush(server, user, { to: 'token user' });
    await waitFor(() => t.messages.length === 1, { what: 'message' });
    assert.deepEqual(t.messages[0].data, { to: 'token user' });
  });

  test('a token with a deviceId: token= and device_id= together', async (t_) => {
    const user = newUser('jwt-device');
    const log = { urls: [], sent: [] };
    const token = signed({ sub: user, exp: nowS() + 600 });
    const client = newClient({ token, deviceId: 'tablet', WebSocket: recordingWebSocket(log) });
    const t = track(client);
    client.connect();
    await waitFor(() => t.welcomes.length === 1, { what: 'welcome' });
    const params = new URL(log.urls[0]).searchParams;
    assert.equal(params.get('token'), token);
    assert.equal(params.get('device_id'), 'tablet');
    assert.equal(client.userId, user);
    assert.equal(t.welcomes[0].deviceId, 'tablet');
  });

  test('a token with a bad signature is refused with 401, and a fixed token is not retried', async () => {
    const client = newClient({ token: signed({ sub: 'mallory', exp: nowS() + 600 }, 'not-the-secret'), minDelay: 50 });
    const t = track(client);
    client.connect();
    const closed = await t.waitState('closed');
    assert.equal(closed.error.kind, 'refused');
    assert.equal(closed.error.status, 401);
    assert.match(closed.error.message, /refused the connection with HTTP 401: the token is bad or expired/);
    assert.equal(t.stateNames().includes('reconnecting'), false);
  });

  test('a token function keeps the connection past exp with refresh frames', async () => {
    const user = newUser('refresh');
    const log = { urls: [], sent: [] };
    let issued = 0;
    const client = newClient({
      token: () => {
        issued++;
        return signed({ sub: user, exp: nowS() + 3 });
      },
      refreshBefore: 1500,
      WebSocket: recordingWebSocket(log),
    });
    const t = track(client);
    client.connect();
    await waitFor(() => t.welcomes.length === 1, { what: 'welcome' });
    const firstExp = JSON.parse(Buffer.from(new URL(log.urls[0]).searchParams.get('token').split('.')[1], 'base64url')).exp;
    // Past the first token's exp (the server closes at exp with --jwt_leeway=0s).
    await waitFor(() => Date.now() > firstExp * 1000 + 1500, { what: 'exp to pass', timeout: 8000 });
    assert.equal(client.state, 'open');
    assert.equal(client.stats.connects, 1, 'never reconnected');
    assert.ok(log.sent.some((f) => f.type === 'refresh'), 'sent a refresh frame');
    assert.ok(issued >= 2);
    await grpcPush(server, user, { still: 'here' });
    await waitFor(() => t.messages.length === 1, { what: 'message after exp' });
  });

  test('a fixed token closes with 4001 at exp and says so; it is not retried', async () => {
    const user = newUser('expiring');
    const client = newClient({ token: signed({ sub: user, exp: nowS() + 2 }), minDelay: 50 });
    const t = track(client);
    client.connect();
    await t.waitState('open');
    const r = await waitFor(() => t.states.find((s) => s.state === 'reconnecting'), {
      what: '4001',
      timeout: 8000,
    });
    assert.equal(r.code, 4001);
    assert.ok(t.errors.some((e) => e.kind === 'token' && /ended the connection: token expired/.test(e.message)));
    const closed = await t.waitState('closed');
    assert.match(closed.error.message, /the token expired at/);
    assert.equal(client.stats.connects, 1);
  });
});

describe('PushClient when the server restarts', () => {
  test('reports the outage, backs off with jitter, then detects the new stream and resumes', async () => {
    let server = await startPushd();
    const wsPort = server.wsPort;
    const user = newUser('restart');
    const client = new PushClient({ url: server.wsUrl, WebSocket, userId: user, minDelay: 100, maxDelay: 400 });
    const t = track(client);
    try {
      client.connect();
      await waitFor(() => t.welcomes.length === 1, { what: 'welcome' });
      for (let n = 1; n <= 3; n++) await demoPush(server, user, { n });
      await waitFor(() => t.messages.length === 3, { what: 'three messages' });

      await server.stop();
      const shutdown = await t.waitState('reconnecting');
      assert.equal(shutdown.code, 1001);
      await waitFor(() => t.states.filter((s) => s.state === 'reconnecting').length >= 4, {
        what: 'several attempts',
      });
      const attempts = t.states.filter((s) => s.state === 'reconnecting');
      for (const s of attempts) {
        const base = Math.min(400, 100 * 2 ** (s.attempt - 1));
        assert.ok(s.delay >= base / 2 && s.delay <= base, `attempt ${s.attempt}: ${s.delay} in [${base / 2}, ${base}]`);
      }
      assert.ok(t.errors.some((e) => e.kind === 'unreachable'), 'says the server cannot be reached');

      // The same address, a new in-memory store: its stream for the user restarts at 1.
      server = await startPushd([`--ws_listen=127.0.0.1:${wsPort}`]);
      await waitFor(() => t.welcomes.length === 2, { what: 'welcome from the new server', timeout: 15000 });
      assert.deepEqual(t.resets, [{ lastSeq: 3, seq: 0 }]);
      await demoPush(server, user, { n: 'new 1' });
      await waitFor(() => t.messages.length === 4, { what: 'first message of the new stream' });
      assert.deepEqual(t.seqs(), [1, 2, 3, 1]);
      assert.equal(t.messages[3].data.n, 'new 1');
    } finally {
      client.close();
      await server.stop();
    }
  });
});

describe('PushClient without a server', () => {
  test('abandons a handshake that never completes', async () => {
    const sockets = [];
    const silent = createServer((s) => sockets.push(s));
    await new Promise((r) => silent.listen(0, '127.0.0.1', r));
    const client = new PushClient({
      url: `ws://127.0.0.1:${silent.address().port}/ws`,
      WebSocket,
      userId: 'u',
      connectTimeout: 300,
      minDelay: 5000,
    });
    const t = track(client);
    try {
      client.connect();
      const r = await t.waitState('reconnecting');
      assert.equal(r.error.kind, 'timeout');
      assert.match(r.error.message, /no WebSocket handshake within 300 ms/);
    } finally {
      client.close();
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  test('options are checked', () => {
    assert.throws(() => new PushClient({ url: 'ws://x/ws', WebSocket }), /exactly one of userId and token/);
    assert.throws(
      () => new PushClient({ url: 'ws://x/ws', WebSocket, userId: 'a', token: 'b' }),
      /exactly one of userId and token/,
    );
    assert.throws(() => new PushClient({ userId: 'a', WebSocket }), /url is required/);
    for (const userId of ['', 'a b', 'x'.repeat(129), 'é']) {
      assert.throws(() => new PushClient({ url: 'ws://x/ws', WebSocket, userId }), /userId must be 1-128/);
    }
    assert.doesNotThrow(() => new PushClient({ url: 'ws://x/ws', WebSocket, userId: 'A-z.0_9:@' }));
    for (const deviceId of ['', 'a b', 'x'.repeat(65), 'é', 'a@b', 'a/b', 7, {}]) {
      assert.throws(
        () => new PushClient({ url: 'ws://x/ws', WebSocket, userId: 'a', deviceId }),
        /deviceId must be 1-64 characters of A-Z a-z 0-9 \. _ : -/,
        `deviceId ${JSON.stringify(deviceId)}`,
      );
    }
    for (const deviceId of ['x'.repeat(64), 'A-z.0_9:', undefined, null]) {
      assert.doesNotThrow(() => new PushClient({ url: 'ws://x/ws', WebSocket, userId: 'a', deviceId }));
    }
    assert.doesNotThrow(() => new PushClient({ url: 'ws://x/ws', WebSocket, token: 'a.b.c', deviceId: 'd' }));
    assert.throws(() => new PushClient({ url: 'ftp://x/ws', WebSocket, userId: 'a' }), /unsupported url scheme/);
    const c = new PushClient({ url: 'https://push.example.com/ws', WebSocket, userId: 'a' });
    assert.equal(c.state, 'closed');
    assert.throws(() => c.ack(1), /needs the ack option/);
  });

  test('the default reconnect policy', () => {
    assert.equal(defaultShouldReconnect({ code: 1000, reason: 'deleted' }), false);
    assert.equal(defaultShouldReconnect({ code: 1000, reason: 'logout' }), false);
    assert.equal(defaultShouldReconnect({ code: 1000, reason: 'reconnect' }), true);
    for (const code of [1001, 1003, 1006, 1008, 1009, 1011, 4008]) {
      assert.equal(defaultShouldReconnect({ code, reason: '' }), true, `code ${code}`);
    }
  });

  test('checkToken', () => {
    assert.equal(checkToken(jwt({ sub: 'a' })), null);
    assert.equal(checkToken(jwt({ sub: 'a', exp: 2000 }), 1999 * 1000), null);
    assert.match(checkToken(jwt({ sub: 'a', exp: 2000 }), 2000 * 1000), /expired/);
    assert.match(checkToken(''), /empty/);
    assert.match(checkToken('a.b'), /not a JWT/);
    assert.match(checkToken('..x'), /not a JWT/);
    assert.match(checkToken('e30.e30.x'), /has no "alg"/);
    assert.match(checkToken(`${Buffer.from('{"alg":"HS256"}').toString('base64url')}.WzFd.x`), /not a JSON object/);
    assert.match(checkToken('%%%.e30.x'), /not base64url-encoded JSON/);
  });
});
