// The demo page and pushclient.js in real headless Chromium against a real pushd on 127.0.0.1:
// pushes through gRPC (pushctl) and the page's own form, server-side kills, and JWT errors.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  grpcPush,
  isRoot,
  killConnections,
  liveConnections,
  pushctl,
  sleep,
  startPushd,
  waitFor,
} from '../../clients/js/testing/pushd.js';
import { launchBrowser, pageSeqs, screenshot, waitText, withPage } from './browser.mjs';

let userCounter = 0;
const newUser = (name) => `${name}-${process.pid}-${++userCounter}`;

function jwt(payload) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(payload)}.c2lnbmF0dXJl`;
}

describe('demo page in Chromium', () => {
  let server;
  let browser;

  before(async () => {
    server = await startPushd();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  async function connect(page, user, query = '') {
    await page.goto(`${server.httpBase}/${query}`);
    await page.fill('#user', user);
    await page.click('#connect');
    await waitText(page, '#state', /^open$/);
    await waitFor(async () => (await page.textContent('#connection-id')) !== 'none', {
      what: 'the welcome frame',
    });
  }

  test('connects and shows a gRPC push live, with its seq and latency', async () => {
    await withPage(browser, 'live-push', async (page) => {
      const user = newUser('alice');
      await connect(page, user);
      const pushed = await grpcPush(server, user, { hello: 'world' });
      assert.equal(pushed.seq, 1);
      assert.equal(pushed.delivered, 1);
      const line = page.locator('#log li.message[data-seq="1"]');
      await line.waitFor();
      assert.equal(await line.locator('.seq').textContent(), '#1');
      assert.equal(await line.locator('.data').textContent(), '{"hello":"world"}');
      assert.match(await line.locator('.latency').textContent(), /^\d+ ms$/);
      assert.equal(await page.textContent('#last-seq'), '1');
      assert.equal(await page.textContent('#error'), '');
      await screenshot(page, 'live-push');
    });
  });

  test("the page's push form sends a message that comes back to the page", async () => {
    await withPage(browser, 'push-form', async (page) => {
      const user = newUser('form');
      await connect(page, user);
      assert.equal(await page.inputValue('#push-user'), user);
      await page.fill('#push-data', '{"from":"the form","n":[1,2]}');
      await page.click('#push');
      await waitText(page, '#push-result', /^pushed seq=1 delivered=1 \(id \S+\)$/);
      const line = page.locator('#log li.message[data-seq="1"]');
      await line.waitFor();
      assert.equal(await line.locator('.data').textContent(), '{"from":"the form","n":[1,2]}');

      await page.fill('#push-data', '{"oops": ');
      await page.click('#push');
      await waitText(page, '#push-result', /^Push refused \(400\): data is not one valid JSON value/);
      assert.match(await page.getAttribute('#push-result', 'class'), /bad/);
      await screenshot(page, 'push-form');
    });
  });

  test('killed server-side, it reconnects and gets what was pushed meanwhile, without duplicates', async (t) => {
    if (!isRoot()) {
      t.skip('needs root to kill the server side of the connection with ss -K');
      return;
    }
    await withPage(browser, 'reconnect-after-kill', async (page) => {
      const user = newUser('kill');
      // A first retry after 2-4 s, so the pushes below happen while the page is away, even on
      // a busy machine.
      await connect(page, user, '?minDelay=4000&maxDelay=8000');
      await grpcPush(server, user, { n: 1 });
      await page.locator('#log li.message[data-seq="1"]').waitFor();

      assert.ok((await killConnections(server)) >= 1, 'ss -K found the connection');
      await waitText(page, '#state', /^reconnecting$/);
      await waitText(page, '#detail', /^closed with 1006; retry in \d\.\d s$/);
      await waitFor(async () => (await liveConnections(server, user)) === 0, {
        what: 'the server to drop the connection',
      });
      const p2 = await grpcPush(server, user, { n: 2 });
      const p3 = await grpcPush(server, user, { n: 3 });
      assert.deepEqual([p2.seq, p2.delivered, p3.seq, p3.delivered], [2, 0, 3, 0]);
      assert.equal(await page.textContent('#state'), 'reconnecting', 'still away while pushing');

      await waitText(page, '#state', /^open$/, 15000);
      await page.locator('#log li.message[data-seq="3"]').waitFor();
      const p4 = await grpcPush(server, user, { n: 4 });
      assert.equal(p4.delivered, 1);
      await page.locator('#log li.message[data-seq="4"]').waitFor();
      await sleep(200); // a duplicate would show up right behind
      assert.deepEqual(await pageSeqs(page), [1, 2, 3, 4]);
      assert.deepEqual(
        await page.$$eval('#log li.message .data', (els) => els.map((e) => JSON.parse(e.textContent).n)),
        [1, 2, 3, 4],
      );
      assert.equal(await page.evaluate(() => window.demoClient.stats.duplicatesDropped), 0);
      assert.equal(await page.evaluate(() => window.demoClient.stats.connects), 2);
      await screenshot(page, 'reconnect-after-kill');
    });
  });

  test("DeleteClient with reason 'reconnect' brings the page back; a plain DeleteClient ends it", async () => {
    await withPage(browser, 'delete-client', async (page) => {
      const user = newUser('deleted');
      await connect(page, user, '?minDelay=4000&maxDelay=8000');
      await grpcPush(server, user, { n: 1 });
      await page.locator('#log li.message[data-seq="1"]').waitFor();

      await pushctl(server, ['delete', '--user', user, '--reason', 'reconnect']);
      await waitText(page, '#detail', /^closed with 1000 reconnect; retry in \d\.\d s$/);
      await waitFor(async () => (await liveConnections(server, user)) === 0, { what: 'closed' });
      const p2 = await grpcPush(server, user, { n: 2 });
      assert.equal(p2.delivered, 0);
      await waitText(page, '#state', /^open$/, 15000);
      await page.locator('#log li.message[data-seq="2"]').waitFor();

      await pushctl(server, ['delete', '--user', user]);
      await waitText(page, '#state', /^closed$/);
      assert.equal(await page.textContent('#detail'), 'closed with 1000 deleted');
      // A client about to reconnect shows 'reconnecting' at once, before its delay.
      await sleep(1000);
      assert.equal(await page.textContent('#state'), 'closed');
      assert.equal(await page.textContent('#detail'), 'closed with 1000 deleted');
      assert.equal(await liveConnections(server, user), 0);
      assert.equal((await grpcPush(server, user, { n: 3 })).delivered, 0);
      assert.deepEqual(await pageSeqs(page), [1, 2]);
      assert.equal(await page.isEnabled('#connect'), true);
    });
  });

  test("another origin's page imports /pushclient.js and receives pushes with it", async () => {
    await withPage(browser, 'cross-origin-import', async (page) => {
      const user = newUser('xorigin');
      // http://localhost:P and http://127.0.0.1:P are different origins.
      await page.goto(`http://localhost:${server.wsPort}/healthz`);
      const base = `http://127.0.0.1:${server.wsPort}`;
      await page.evaluate(
        async ({ base, user }) => {
          const { PushClient } = await import(`${base}/pushclient.js`);
          window.got = [];
          window.client = new PushClient({ url: `${base}/ws`, userId: user });
          window.client.on('message', (m) => window.got.push(m));
          window.client.connect();
        },
        { base, user },
      );
      await waitFor(() => page.evaluate(() => window.client.state === 'open'), { what: 'open' });
      await waitFor(async () => (await liveConnections(server, user)) === 1, { what: 'connected' });
      await grpcPush(server, user, { hello: 'from afar' });
      const got = await waitFor(() => page.evaluate(() => window.got.length && window.got), {
        what: 'the message',
      });
      assert.deepEqual(
        got.map((m) => [m.seq, m.data]),
        [[1, { hello: 'from afar' }]],
      );
      await page.evaluate(() => window.client.close());
    });
  });

  test('JWT: a bad token shows a clear error; a good one connects as its sub', async () => {
    const secret = 'browser-tests-secret-0123456789abcdef0123456789';
    const dir = await mkdtemp(join(tmpdir(), 'pushd-jwt-'));
    await writeFile(join(dir, 'secret'), secret);
    const jwtServer = await startPushd(['--auth=jwt', `--jwt_hs256_secret_file=${join(dir, 'secret')}`]);
    const signed = (payload, key = secret) => {
      const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const input = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(payload)}`;
      return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`;
    };
    const exp = Math.floor(Date.now() / 1000) + 3600;
    try {
      await withPage(browser, 'bad-token', async (page) => {
        await page.goto(`${jwtServer.httpBase}/?minDelay=3000&maxDelay=6000`);
        await page.check('#mode-token');
        assert.equal(await page.isVisible('#token'), true);
        assert.equal(await page.isVisible('#user'), false);

        // Not a JWT at all: refused before any connection.
        await page.fill('#token', 'not-a-jwt');
        await page.click('#connect');
        await waitText(page, '#error', /^Error: the token is not a JWT \(expected three base64url parts/);
        assert.equal(await page.textContent('#state'), 'closed');

        // Expired: refused before any connection too.
        await page.fill('#token', jwt({ sub: 'tom', exp: 1700000000 }));
        await page.click('#connect');
        await waitText(page, '#error', /^Error: the token expired at 2023-11-14T22:13:20.000Z; get a fresh one$/);
        assert.equal(await page.textContent('#state'), 'closed');

        // Well-formed but signed with another key: pushd answers 401 before the upgrade. A
        // browser does not show a page that status; the client tells it from an unreachable
        // server and keeps retrying gently.
        await page.fill('#token', signed({ sub: 'tom', exp }, 'some-other-secret-0123456789abcdef'));
        await page.click('#connect');
        await waitText(
          page,
          '#error',
          /^Error: the server refused the connection with an HTTP error: the token is bad or expired/,
        );
        await waitText(page, '#state', /^reconnecting$/);
        await screenshot(page, 'bad-token');
        await page.click('#disconnect');
        await waitText(page, '#state', /^closed$/);

        // A good token: connected as its sub, which the push form picks up.
        const user = newUser('tom');
        await page.fill('#token', signed({ sub: user, exp }));
        await page.click('#connect');
        await waitText(page, '#state', /^open$/);
        await waitFor(async () => (await page.inputValue('#push-user')) === user, { what: 'the sub' });
        assert.equal(await page.textContent('#error'), '');
        await grpcPush(jwtServer, user, { for: 'tom' });
        await page.locator('#log li.message[data-seq="1"]').waitFor();
        await page.click('#disconnect');
      });
    } finally {
      await jwtServer.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a device id goes with the connection and the welcome shows it; a bad one is refused on the page', async (t) => {
    await withPage(browser, 'device-id', async (page) => {
      const sockets = [];
      page.on('websocket', (ws) => sockets.push(new URL(ws.url())));
      const user = newUser('device');
      await page.goto(`${server.httpBase}/`);
      assert.equal(await page.inputValue('#device'), '');
      assert.equal(await page.textContent('#device-id'), 'none');

      // Not a device id: the client refuses it before any connection, and the page says why.
      await page.fill('#user', user);
      await page.fill('#device', 'my phone');
      await page.click('#connect');
      await waitText(page, '#error', /^PushClient: deviceId must be 1-64 characters of A-Z a-z 0-9 \. _ : -/);
      assert.equal(await page.textContent('#state'), 'closed');
      assert.equal(sockets.length, 0);

      await page.fill('#device', 'phone-1');
      await page.click('#connect');
      await waitText(page, '#state', /^open$/);
      await waitFor(async () => (await page.textContent('#connection-id')) !== 'none', {
        what: 'the welcome frame',
      });
      assert.equal(await page.textContent('#error'), '');
      assert.equal(sockets.length, 1);
      assert.equal(sockets[0].searchParams.get('device_id'), 'phone-1');
      assert.equal(sockets[0].searchParams.get('user_id'), user);
      const firstDevice = await page.textContent('#device-id');
      const pushed = await grpcPush(server, user, { to: 'the phone' });
      assert.equal(pushed.delivered, 1);
      await page.locator('#log li.message[data-seq="1"]').waitFor();

      // From the page's address too: ?device_id= fills the field.
      await page.click('#disconnect');
      await waitText(page, '#state', /^closed$/);
      await page.goto(`${server.httpBase}/?user_id=${user}&device_id=tablet&connect=1`);
      assert.equal(await page.inputValue('#device'), 'tablet');
      await waitText(page, '#state', /^open$/);
      await waitFor(() => sockets.length === 2, { what: 'the second connection' });
      assert.equal(sockets[1].searchParams.get('device_id'), 'tablet');
      await waitFor(async () => (await page.textContent('#connection-id')) !== 'none', {
        what: 'the welcome frame',
      });
      const welcomed = await page.evaluate(() => window.demoClient.connectionId);
      assert.ok(welcomed);
      await waitText(page, '#device-id', /^tablet$/);
      assert.equal(firstDevice, 'phone-1');
      await screenshot(page, 'device-id');
    });
  });

  test('a reloaded page resumes after the last seq it showed, even when another tab moved on', async () => {
    await withPage(browser, 'reload', async (page) => {
      const user = newUser('reload');
      await connect(page, user);
      await grpcPush(server, user, { n: 1 });
      await page.locator('#log li.message[data-seq="1"]').waitFor();
      await page.reload();
      // Meanwhile another tab of the same user takes message 2, which moves the user's
      // delivered cursor past it: only `since` can bring it to the reloaded page.
      await withPage(browser, 'reload-other-tab', async (other) => {
        await connect(other, user);
        const p2 = await grpcPush(server, user, { n: 2 });
        assert.equal(p2.delivered, 1);
        await other.locator('#log li.message[data-seq="2"]').waitFor();
      });
      await page.fill('#user', user);
      await page.click('#connect');
      await waitText(page, '#state', /^open$/);
      await page.locator('#log li.message[data-seq="2"]').waitFor();
      await sleep(200);
      assert.deepEqual(await pageSeqs(page), [2]);
      assert.equal(await page.textContent('#last-seq'), '2');
    });
  });
});
