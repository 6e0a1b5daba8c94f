// The edge's browser routes over plain HTTP against a real pushd: GET / and GET /pushclient.js
// serve the files embedded at build time, and POST /demo/push exists only in development.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { WebSocket } from 'ws';

import { startPushd } from '../../clients/js/testing/pushd.js';

const repoFile = (path) => new URL(`../../${path}`, import.meta.url);

function post(server, path, body, type = 'application/json') {
  const headers = type ? { 'Content-Type': type } : {};
  return fetch(`${server.httpBase}${path}`, {
    method: 'POST',
    headers,
    body,
    signal: AbortSignal.timeout(10000),
  });
}

describe('browser routes in development (--auth=none, no API key)', () => {
  let server;
  before(async () => {
    server = await startPushd();
  });
  after(async () => {
    await server?.stop();
  });

  test('GET / is the demo page from edge/web/index.html, as built', async () => {
    const res = await fetch(`${server.httpBase}/`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    const same = (await res.text()) === (await readFile(repoFile('edge/web/index.html'), 'utf8'));
    assert.ok(same, 'GET / differs from edge/web/index.html: rebuild pushd');
  });

  test('GET /pushclient.js is clients/js/pushclient.js, as built', async () => {
    const res = await fetch(`${server.httpBase}/pushclient.js`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(res.headers.get('access-control-allow-origin'), '*', 'importable from any page');
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    const same = (await res.text()) === (await readFile(repoFile('clients/js/pushclient.js'), 'utf8'));
    assert.ok(same, 'GET /pushclient.js differs from clients/js/pushclient.js: rebuild pushd');
  });

  test('other methods on the page routes get 405', async () => {
    for (const path of ['/', '/pushclient.js']) {
      const res = await post(server, path, '{}');
      assert.equal(res.status, 405, path);
    }
    const res = await fetch(`${server.httpBase}/demo/push?user_id=a`);
    assert.equal(res.status, 405);
  });

  test('POST /demo/push pushes the body, verbatim, to the user_id', async () => {
    const raw = '{"price":1.50,"tags":["a","b"],"nested":{"x":null}}';
    const res = await post(server, '/demo/push?user_id=demo-verbatim', raw);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.deepEqual(Object.keys(body).sort(), ['delivered', 'message_id', 'seq']);
    assert.equal(body.seq, 1);
    assert.equal(body.delivered, 0);
    assert.match(body.message_id, /^\S+$/);
    const again = await (await post(server, '/demo/push?user_id=demo-verbatim', '2')).json();
    assert.equal(again.seq, 2);

    // The frames carry the bytes as pushed (1.50 stays 1.50): read them back by replay.
    const frames = await new Promise((resolve, reject) => {
      const ws = new WebSocket(`${server.wsUrl}?user_id=demo-verbatim&since=0`);
      const got = [];
      const timer = setTimeout(() => reject(new Error(`timed out; got ${got}`)), 10000);
      ws.on('message', (d) => {
        got.push(d.toString());
        if (got.length === 3) {
          clearTimeout(timer);
          ws.close();
          resolve(got);
        }
      });
      ws.on('error', reject);
    });
    assert.match(frames[1], /"seq":1,.*"data":\{"price":1\.50,"tags":\["a","b"\],"nested":\{"x":null\}\}\}$/);
    assert.match(frames[2], /"seq":2,.*"data":2\}$/);
  });

  test('POST /demo/push says what is wrong with bad input', async () => {
    const cases = [
      ['/demo/push?user_id=a', '{"a":', 'application/json', 400, /data is not one valid JSON value/],
      ['/demo/push?user_id=a', '', 'application/json', 400, /data is empty/],
      ['/demo/push', '{}', 'application/json', 400, /missing user_id query parameter/],
      ['/demo/push?user_id=a%20b', '{}', 'application/json', 400, /user_id may contain only/],
      ['/demo/push?user_id=a', '{}', 'text/plain', 415, /Content-Type must be application\/json/],
      ['/demo/push?user_id=a', '{}', null, 415, /Content-Type must be application\/json/],
    ];
    for (const [path, body, type, status, pattern] of cases) {
      const res = await post(server, path, body, type);
      assert.equal(res.status, status, `${path} ${JSON.stringify(body)} ${type}`);
      assert.match((await res.json()).error, pattern);
    }
    const json = await post(server, '/demo/push?user_id=a', '{}', 'Application/JSON; charset=utf-8');
    assert.equal(json.status, 200, 'the media type is case-insensitive and takes parameters');
  });
});

describe('browser routes with an API key', () => {
  let server;
  let dir;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pushd-key-'));
    await writeFile(join(dir, 'key'), 'secret-key-0123456789\n');  // keys need >= 16 bytes
    server = await startPushd([`--api_key_file=${join(dir, 'key')}`]);
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('POST /demo/push does not exist; the page and the client are still served', async () => {
    const res = await post(server, '/demo/push?user_id=a', '{}');
    assert.equal(res.status, 404);
    assert.match((await res.json()).error, /only with --auth=none and no API key/);
    assert.equal((await fetch(`${server.httpBase}/`)).status, 200);
    assert.equal((await fetch(`${server.httpBase}/pushclient.js`)).status, 200);
  });
});
