// pushclient.js: a small, dependency-free client for pushd's WebSocket edge (/ws).
//
// It connects, tracks the last seq it handed to the application, reconnects with exponential
// backoff and jitter resuming with `since`, acknowledges messages when asked to, and never
// delivers a seq twice. Works in browsers and, with an injected WebSocket constructor (for
// example the `ws` package), in Node.js. See README.md next to this file.

const DEFAULTS = {
  minDelay: 500, // first reconnect delay (ms); each attempt doubles it, up to maxDelay
  maxDelay: 30000,
  connectTimeout: 10000, // a handshake that has not opened by then is abandoned
  stableAfter: 5000, // a connection open this long resets the backoff
  refreshBefore: 30000, // with a token function: refresh this long before the token's exp
};

// The DeleteClient reason by which a backend asks clients to come back (rebalance, re-auth).
// Any other close with code 1000 is a deliberate end (logout, kick): the client stays closed.
export const RECONNECT_REASON = 'reconnect';

const CLOSE_NORMAL = 1000;
const USER_ID = /^[A-Za-z0-9._:@-]{1,128}$/; // as the server accepts it
const DEVICE_ID = /^[A-Za-z0-9._:-]{1,64}$/; // as the server accepts it (device_id=)
const CLOSE_TOKEN_EXPIRED = 4001; // pushd --auth=jwt: the token expired without a refresh

// The token's exp in Unix ms, or null (no exp, or not a JWT).
function tokenExpiry(token) {
  try {
    const exp = JSON.parse(base64UrlDecode(token.split('.')[1])).exp;
    return typeof exp === 'number' ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * Decides whether to reconnect after the server (or the network) closed the connection.
 * Closed by the application: never. Code 1000 (DeleteClient): only when the reason is
 * 'reconnect'. Everything else (1001 shutdown, 1006 dropped, 4008 slow consumer, protocol
 * errors, refused handshakes): yes, with backoff.
 */
export function defaultShouldReconnect({ code, reason }) {
  if (code === CLOSE_NORMAL) return reason === RECONNECT_REASON;
  return true;
}

function base64UrlDecode(part) {
  if (!/^[A-Za-z0-9_-]+$/.test(part)) throw new Error('not base64url');
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4);
  const binary = atob(b64);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

/**
 * Checks what a client can check about a JWT without the key: its shape and its expiry.
 * Returns null when the token looks usable, else a sentence saying what is wrong.
 */
export function checkToken(token, now = Date.now()) {
  if (typeof token !== 'string' || token.length === 0) return 'the token is empty';
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] === '' || parts[1] === '') {
    return "the token is not a JWT (expected three base64url parts separated by '.')";
  }
  let header;
  let payload;
  try {
    header = JSON.parse(base64UrlDecode(parts[0]));
    payload = JSON.parse(base64UrlDecode(parts[1]));
  } catch {
    return 'the token is not a JWT (its header or payload is not base64url-encoded JSON)';
  }
  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(header) || typeof header.alg !== 'string') {
    return 'the token is not a JWT (its header has no "alg")';
  }
  if (!isObject(payload)) {
    return 'the token is not a JWT (its payload is not a JSON object)';
  }
  if (typeof payload.exp === 'number' && payload.exp * 1000 <= now) {
    return `the token expired at ${new Date(payload.exp * 1000).toISOString()}; get a fresh one`;
  }
  return null;
}

function defaultUrl() {
  const loc = globalThis.location;
  if (!loc || !loc.host) return null;
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}

/**
 * A connection to pushd that survives drops.
 *
 *   const client = new PushClient({ userId: 'alice' });
 *   client.on('message', (m) => console.log(m.seq, m.data));
 *   client.connect();
 */
export class PushClient {
  constructor(options = {}) {
    const opts = { ...DEFAULTS };
    for (const [key, value] of Object.entries(options)) if (value !== undefined) opts[key] = value;
    if ((opts.userId == null) === (opts.token == null)) {
      throw new TypeError('PushClient: give exactly one of userId and token');
    }
    if (opts.userId != null && !USER_ID.test(opts.userId)) {
      throw new TypeError('PushClient: userId must be 1-128 characters of A-Z a-z 0-9 . _ : @ -');
    }
    if (opts.deviceId != null && (typeof opts.deviceId !== 'string' || !DEVICE_ID.test(opts.deviceId))) {
      throw new TypeError(
        `PushClient: deviceId must be 1-64 characters of A-Z a-z 0-9 . _ : - (got ${JSON.stringify(opts.deviceId)})`,
      );
    }
    const url = opts.url ?? defaultUrl();
    if (!url) throw new TypeError('PushClient: url is required outside a browser page');
    this._url = new URL(url, globalThis.location?.href);
    if (this._url.protocol === 'http:') this._url.protocol = 'ws:';
    if (this._url.protocol === 'https:') this._url.protocol = 'wss:';
    if (this._url.protocol !== 'ws:' && this._url.protocol !== 'wss:') {
      throw new TypeError(`PushClient: unsupported url scheme ${this._url.protocol}`);
    }
    this._WebSocket = opts.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError('PushClient: no WebSocket here; pass one as options.WebSocket');
    }
    this._fetch = opts.fetch ?? globalThis.fetch?.bind(globalThis);
    this._userId = opts.userId ?? null;
    this._token = opts.token ?? null;
    this._deviceId = opts.deviceId ?? null;
    this._ack = Boolean(opts.ack);
    this._autoAck = opts.autoAck ?? true;
    this._minDelay = opts.minDelay;
    this._maxDelay = Math.max(opts.maxDelay, opts.minDelay);
    this._connectTimeout = opts.connectTimeout;
    this._stableAfter = opts.stableAfter;
    this._refreshBefore = opts.refreshBefore;
    this._refreshTimer = null;
    this._currentToken = null; // the token of the current connection
    this._shouldReconnect = opts.shouldReconnect ?? defaultShouldReconnect;
    this._random = opts.random ?? Math.random;

    // lastSeq is "known" once the application gave one or the stream told us where we are;
    // until then the server replays from the user's delivered cursor.
    this._lastSeq = Number.isSafeInteger(opts.lastSeq) && opts.lastSeq >= 0 ? opts.lastSeq : 0;
    this._seqKnown = Number.isSafeInteger(opts.lastSeq) && opts.lastSeq >= 0;

    this._listeners = new Map();
    this._state = 'closed';
    this._ws = null;
    this._timer = null; // reconnect delay or handshake timeout
    this._attempt = 0;
    this._wanted = false; // the application wants a connection
    this._generation = 0; // bumps on every connect/close so stale callbacks do nothing
    this._connectionId = null;
    this._openedAt = 0;
    this._welcomed = false;
    this._lastError = null;
    this.stats = { connects: 0, messages: 0, duplicatesDropped: 0, gaps: 0, resets: 0 };
  }

  /** The current state: 'connecting', 'open', 'reconnecting' or 'closed'. */
  get state() {
    return this._state;
  }
  /** The last seq handed to the application (0 when none). Persist it to resume later. */
  get lastSeq() {
    return this._lastSeq;
  }
  /** The server's id of the current connection, from its welcome frame. */
  get connectionId() {
    return this._connectionId;
  }
  /** The user this client connects as (from the welcome frame when a token is used). */
  get userId() {
    return this._userId;
  }
  /** The device this client connects as (the deviceId option), or null. */
  get deviceId() {
    return this._deviceId;
  }

  /** Subscribes to 'message', 'gap', 'state', 'welcome', 'reset' or 'error'; returns an unsubscribe function. */
  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  /** Starts connecting (and keeps reconnecting until close()). */
  connect() {
    if (this._wanted) return;
    this._wanted = true;
    this._attempt = 0;
    this._lastError = null;
    this._open();
  }

  /** Closes the connection for good (code 1000); no reconnect follows. */
  close() {
    this._wanted = false;
    this._generation++;
    clearTimeout(this._timer);
    this._timer = null;
    clearTimeout(this._refreshTimer);
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      try {
        ws.close(CLOSE_NORMAL, 'client closed');
      } catch {
        // already closing
      }
    }
    if (this._state !== 'closed') {
      this._setState('closed', { code: CLOSE_NORMAL, reason: 'client closed', byClient: true });
    }
  }

  /** Acknowledges everything up to seq (for `ack: true` with `autoAck: false`). */
  ack(seq) {
    if (!this._ack) throw new Error('PushClient: ack() needs the ack option');
    if (!Number.isSafeInteger(seq) || seq < 1) throw new TypeError('PushClient: bad seq');
    return this._send({ type: 'ack', seq });
  }

  /**
   * Sends {"type":"refresh","token":...} on the open connection (pushd --auth=jwt then moves
   * its expiry); a fixed token is also replaced for later connections.
   */
  refresh(token) {
    if (this._token == null) throw new Error('PushClient: refresh() needs token mode');
    const problem = checkToken(token);
    if (problem) throw new TypeError(`PushClient: ${problem}`);
    if (typeof this._token !== 'function') this._token = token;
    const sent = this._send({ type: 'refresh', token });
    if (sent) {
      this._currentToken = token;
      this._scheduleRefresh();
    }
    return sent;
  }

  // ---- internals -----------------------------------------------------------------------------

  _emit(event, payload) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(payload);
      } catch (e) {
        // A listener's bug must not break delivery; surface it without swallowing it.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  _setState(state, detail = {}) {
    const previous = this._state;
    this._state = state;
    this._emit('state', { state, previous, ...detail });
  }

  _error(kind, message, extra = {}) {
    this._lastError = { kind, message, ...extra };
    this._emit('error', this._lastError);
  }

  _send(frame) {
    const ws = this._ws;
    if (!ws || this._state !== 'open') return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  async _resolveToken() {
    const token = typeof this._token === 'function' ? await this._token() : this._token;
    const problem = checkToken(token);
    return { token, problem };
  }

  async _open() {
    const generation = ++this._generation;
    this._setState('connecting', { attempt: this._attempt });
    const url = new URL(this._url);
    if (this._token != null) {
      let resolved;
      try {
        resolved = await this._resolveToken();
      } catch (e) {
        if (generation !== this._generation) return;
        this._error('token', `could not get a token: ${e?.message ?? e}`);
        this._retry({ code: 1006, reason: '' });
        return;
      }
      if (generation !== this._generation) return;
      if (resolved.problem) {
        this._error('token', resolved.problem);
        if (typeof this._token === 'function') {
          this._retry({ code: 1006, reason: '' });
        } else {
          // The same token will not get better: stop until the application gives a new one.
          this._wanted = false;
          this._setState('closed', { error: this._lastError });
        }
        return;
      }
      url.searchParams.set('token', resolved.token);
      this._currentToken = resolved.token;
    } else {
      url.searchParams.set('user_id', this._userId);
    }
    if (this._deviceId != null) url.searchParams.set('device_id', this._deviceId);
    if (this._seqKnown) url.searchParams.set('since', String(this._lastSeq));
    if (this._ack) url.searchParams.set('ack', '1');

    let ws;
    try {
      ws = new this._WebSocket(url.toString());
    } catch (e) {
      this._error('url', `cannot open ${url.origin}: ${e?.message ?? e}`);
      this._wanted = false;
      this._setState('closed', { error: this._lastError });
      return;
    }
    this._ws = ws;
    this._welcomed = false;
    this._connectionId = null;
    let opened = false;
    let finished = false;
    let handshakeError = null;
    const finish = (event, explained = false) => {
      if (finished || generation !== this._generation) return;
      finished = true;
      this._onClose(generation, opened, event, explained ? null : handshakeError, explained);
    };
    this._timer = setTimeout(() => {
      if (opened) return;
      this._error('timeout', `no WebSocket handshake within ${this._connectTimeout} ms`);
      try {
        ws.close();
      } catch {
        // ignore
      }
      finish({ code: 1006, reason: 'handshake timeout' }, true);
    }, this._connectTimeout);

    ws.onopen = () => {
      if (generation !== this._generation) return;
      clearTimeout(this._timer);
      opened = true;
      this._openedAt = Date.now();
      this._lastError = null;
      this.stats.connects++;
      this._setState('open', { attempt: this._attempt });
      this._scheduleRefresh();
    };
    ws.onmessage = (event) => {
      if (generation !== this._generation || finished) return;
      this._onFrame(event.data);
    };
    ws.onerror = (event) => {
      // Browsers say nothing useful here; the `ws` package names the HTTP status.
      if (!opened) handshakeError = event?.message || event?.error?.message || null;
    };
    ws.onclose = (event) => finish(event);
  }

  _onFrame(raw) {
    if (typeof raw !== 'string') {
      this._error('protocol', 'the server sent a binary frame');
      return;
    }
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      this._error('protocol', 'the server sent a frame that is not JSON');
      return;
    }
    switch (frame?.type) {
      case 'welcome':
        this._onWelcome(frame);
        break;
      case 'message':
        this._onMessage(frame);
        break;
      case 'gap':
        this._onGap(frame);
        break;
      default:
        // Unknown frame types are for newer clients: ignore them.
        break;
    }
  }

  _onWelcome(frame) {
    this._welcomed = true;
    this._connectionId = frame.connection_id ?? null;
    if (typeof frame.user_id === 'string') this._userId = frame.user_id;
    const seq = Number(frame.seq);
    if (this._seqKnown && seq < this._lastSeq) {
      // The server's stream is shorter than what we saw: it was reset (new store). The server
      // replays the new stream from 1 for a `since` beyond its end, so start over from 0.
      const previous = this._lastSeq;
      this._lastSeq = 0;
      this.stats.resets++;
      this._emit('reset', { lastSeq: previous, seq });
    } else if (!this._seqKnown && seq === 0) {
      this._seqKnown = true; // empty stream: everything that comes later is after 0
    }
    // The device as the server took it (device_id in the welcome); null without one.
    const deviceId = typeof frame.device_id === 'string' ? frame.device_id : null;
    this._emit('welcome', { connectionId: this._connectionId, userId: this._userId, deviceId, seq });
  }

  _onMessage(frame) {
    const seq = Number(frame.seq);
    if (!Number.isSafeInteger(seq) || seq < 1) {
      this._error('protocol', 'the server sent a message without a valid seq');
      return;
    }
    if (this._seqKnown && seq <= this._lastSeq) {
      this.stats.duplicatesDropped++;
      return;
    }
    this._lastSeq = seq;
    this._seqKnown = true;
    this.stats.messages++;
    this._emit('message', { seq, id: frame.id, ts: frame.ts, data: frame.data });
    if (this._ack && this._autoAck) this._send({ type: 'ack', seq });
  }

  _onGap(frame) {
    const from = Number(frame.from);
    const to = Number(frame.to);
    this.stats.gaps++;
    this._emit('gap', { from, to });
    // Those seqs will never come: do not ask for them again on the next connection.
    if (to > this._lastSeq) {
      this._lastSeq = to;
      this._seqKnown = true;
    }
  }

  async _onClose(generation, opened, event, handshakeError, explained = false) {
    clearTimeout(this._timer);
    clearTimeout(this._refreshTimer);
    this._ws = null;
    const code = event?.code ?? 1006;
    const reason = event?.reason ?? '';
    if (opened && this._welcomed && Date.now() - this._openedAt >= this._stableAfter) {
      this._attempt = 0;
    }
    if (!opened && !explained && code !== CLOSE_NORMAL) {
      await this._explainRefusal(handshakeError);
      if (generation !== this._generation) return;
    } else if (code === 1003 || code === 1008 || code === 1009) {
      this._error('protocol', `the server closed the connection (${code} ${reason})`, { code });
    } else if (code === CLOSE_TOKEN_EXPIRED) {
      this._error('token', `the server ended the connection: ${reason || 'token expired'}`, { code });
    }
    // A 401 for a fixed token will not change: stop until the application gives a new one.
    const hopeless = this._lastError?.status === 401 && typeof this._token === 'string';
    if (this._wanted && !hopeless && this._shouldReconnect({ code, reason, opened })) {
      this._retry({ code, reason });
    } else {
      this._wanted = false;
      this._setState('closed', { code, reason, error: opened ? undefined : this._lastError });
    }
  }

  // A WebSocket that never opened says nothing about why in a browser. Tell "the server
  // answered but refused the upgrade" from "the server cannot be reached" with a plain request.
  async _explainRefusal(handshakeError) {
    const status = /Unexpected server response: (\d{3})/.exec(handshakeError ?? '')?.[1];
    if (status) {
      this._error('refused', this._refusalText(`HTTP ${status}`), { status: Number(status) });
      return;
    }
    let reachable = false;
    if (this._fetch) {
      const probe = new URL('/healthz', this._url);
      probe.protocol = this._url.protocol === 'wss:' ? 'https:' : 'http:';
      const init = { mode: 'no-cors', cache: 'no-store' };
      if (typeof AbortSignal?.timeout === 'function') init.signal = AbortSignal.timeout(3000);
      try {
        await this._fetch(probe.toString(), init);
        reachable = true;
      } catch {
        reachable = false;
      }
    }
    if (reachable) {
      this._error('refused', this._refusalText('an HTTP error'));
    } else {
      this._error('unreachable', `cannot reach the server at ${this._url.host}`);
    }
  }

  _refusalText(what) {
    const who =
      this._token != null
        ? 'the token is bad or expired, the origin is not allowed, or the server is not ready'
        : 'the origin is not allowed or the server is not ready';
    return `the server refused the connection with ${what}: ${who}`;
  }

  // With a token function, get a fresh token before the current one expires and send it as a
  // refresh frame, so that the server (which closes with 4001 at exp) keeps the connection.
  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    if (typeof this._token !== 'function' || this._state !== 'open') return;
    const expiry = tokenExpiry(this._currentToken);
    if (expiry === null) return;
    const remaining = expiry - Date.now();
    if (remaining <= 0) return;
    const generation = this._generation;
    const delay = Math.max(remaining - this._refreshBefore, remaining / 2);
    this._refreshTimer = setTimeout(async () => {
      let token;
      try {
        token = await this._token();
      } catch (e) {
        if (generation === this._generation) this._error('token', `could not refresh the token: ${e?.message ?? e}`);
        return;
      }
      if (generation !== this._generation || this._state !== 'open') return;
      const problem = checkToken(token);
      if (problem) {
        this._error('token', `could not refresh the token: ${problem}`);
        return;
      }
      // A token that expires no later than the current one would only bring the next refresh
      // closer; let the server close at exp and reconnect with a new token instead.
      if ((tokenExpiry(token) ?? Infinity) <= expiry) return;
      this._currentToken = token;
      this._send({ type: 'refresh', token });
      this._scheduleRefresh();
    }, delay);
  }

  _retry({ code, reason }) {
    const base = Math.min(this._maxDelay, this._minDelay * 2 ** Math.min(this._attempt, 30));
    // "Equal jitter": half fixed, half random, so clients spread out but never hammer.
    const delay = Math.round(base / 2 + (this._random() * base) / 2);
    this._attempt++;
    const generation = ++this._generation;
    this._setState('reconnecting', {
      code,
      reason,
      delay,
      attempt: this._attempt,
      error: this._lastError ?? undefined,
    });
    this._timer = setTimeout(() => {
      if (generation !== this._generation || !this._wanted) return;
      this._open();
    }, delay);
  }
}
