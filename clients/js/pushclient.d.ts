// Types for pushclient.js: a client for pushd's WebSocket edge (/ws).

/** The DeleteClient reason by which a backend asks clients to reconnect. */
export declare const RECONNECT_REASON: 'reconnect';

export type PushClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** A message as the application receives it: each seq at most once, in increasing order. */
export interface PushMessage<T = unknown> {
  /** Position in the user's stream: 1, 2, 3, ... */
  seq: number;
  /** The message id (the idempotency key given to Push, or one the server made). */
  id: string;
  /** When the server stored it, in Unix milliseconds. */
  ts: number;
  /** The pushed JSON value, parsed. */
  data: T;
}

/** Messages from..to are gone for good (evicted or expired): resync from your backend. */
export interface PushGap {
  from: number;
  to: number;
}

export interface PushWelcome {
  connectionId: string | null;
  userId: string | null;
  /** The device the connection belongs to (the welcome frame's device_id); null without one. */
  deviceId: string | null;
  /** The user's latest seq when the connection opened. */
  seq: number;
}

/** The server's stream is behind what this client saw (a new store): lastSeq went back to 0. */
export interface PushReset {
  /** The lastSeq the client had. */
  lastSeq: number;
  /** The server's latest seq. */
  seq: number;
}

export type PushErrorKind =
  | 'token' // the token is malformed or expired, the token function failed, or 4001 at exp
  | 'refused' // the server answered the upgrade with an HTTP error (401, 400, 403, 503...)
  | 'unreachable' // nothing answers at the url
  | 'timeout' // the handshake did not finish within connectTimeout
  | 'protocol' // the server closed with 1003/1008/1009, or sent a frame the client cannot read
  | 'url'; // the WebSocket constructor rejected the url

export interface PushError {
  kind: PushErrorKind;
  /** A sentence for people. */
  message: string;
  /** The HTTP status of a refused handshake, when the WebSocket implementation tells it. */
  status?: number;
  /** The close code, for 'protocol' and 4001 'token'. */
  code?: number;
}

export interface PushStateChange {
  state: PushClientState;
  previous: PushClientState;
  /** Close code and reason ('reconnecting' and 'closed'). */
  code?: number;
  reason?: string;
  /** Milliseconds until the next attempt ('reconnecting'). */
  delay?: number;
  /** Consecutive attempts without a stable connection. */
  attempt?: number;
  /** Why the last attempt failed, when it never opened. */
  error?: PushError;
  /** True when the application called close(). */
  byClient?: boolean;
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** Whether the connection had opened before it closed. */
  opened: boolean;
}

/** A WebSocket constructor: the browser's, or for example the `ws` package's in Node.js. */
export interface WebSocketLike {
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

interface CommonOptions {
  /**
   * The /ws endpoint (ws:, wss:, http: or https:). Default in a page: /ws on the page's host.
   */
  url?: string;
  /**
   * Connect as this device of the user (device_id=, 1-64 characters of A-Z a-z 0-9 . _ : -,
   * checked at construction): the device has its own delivered cursor, which a connection
   * without `lastSeq` resumes from, and receipts name it.
   */
  deviceId?: string;
  /** Open with ack=1: the user's delivered cursor moves only when this client acknowledges. */
  ack?: boolean;
  /** With ack: acknowledge each message after the 'message' listeners return (default true). */
  autoAck?: boolean;
  /** Resume after this seq (for example one persisted in sessionStorage). */
  lastSeq?: number;
  /** First reconnect delay in ms (default 500); it doubles per attempt up to maxDelay. */
  minDelay?: number;
  /** Longest reconnect delay in ms (default 30000). */
  maxDelay?: number;
  /** Abandon a handshake after this many ms (default 10000). */
  connectTimeout?: number;
  /** With a token function: refresh this many ms before the token's exp (default 30000). */
  refreshBefore?: number;
  /** A connection open this long resets the backoff (ms, default 5000). */
  stableAfter?: number;
  /** Whether to reconnect after a close the application did not ask for. */
  shouldReconnect?: (close: CloseInfo) => boolean;
  /** The WebSocket constructor (default globalThis.WebSocket). */
  WebSocket?: WebSocketConstructor;
  /** fetch, to tell a refused handshake from an unreachable server (default globalThis.fetch). */
  fetch?: (url: string, init?: any) => Promise<unknown>;
  /** Random numbers in [0, 1) for the jitter (default Math.random). */
  random?: () => number;
}

export interface UserIdOptions extends CommonOptions {
  /** Connect as this user (a server with --auth=none). */
  userId: string;
  token?: never;
}

export interface TokenOptions extends CommonOptions {
  /**
   * A JWT (a server with --auth=jwt), or a function that returns a fresh one; the function is
   * called before every connection attempt.
   */
  token: string | (() => string | Promise<string>);
  userId?: never;
}

export type PushClientOptions = UserIdOptions | TokenOptions;

export interface PushClientEvents<T> {
  message: PushMessage<T>;
  gap: PushGap;
  state: PushStateChange;
  welcome: PushWelcome;
  reset: PushReset;
  error: PushError;
}

export interface PushClientStats {
  connects: number;
  messages: number;
  duplicatesDropped: number;
  gaps: number;
  resets: number;
}

export declare class PushClient<T = unknown> {
  constructor(options: PushClientOptions);
  readonly state: PushClientState;
  /** The last seq handed to the application (0 when none). */
  readonly lastSeq: number;
  readonly connectionId: string | null;
  readonly userId: string | null;
  /** The deviceId option, or null. */
  readonly deviceId: string | null;
  readonly stats: PushClientStats;
  /** Subscribes; returns a function that unsubscribes. */
  on<E extends keyof PushClientEvents<T>>(
    event: E,
    listener: (payload: PushClientEvents<T>[E]) => void,
  ): () => void;
  off<E extends keyof PushClientEvents<T>>(
    event: E,
    listener: (payload: PushClientEvents<T>[E]) => void,
  ): void;
  /** Starts connecting, and reconnecting until close(). */
  connect(): void;
  /** Closes for good: no reconnect follows. */
  close(): void;
  /** Acknowledges everything up to seq (with ack and autoAck false). False when not open. */
  ack(seq: number): boolean;
  /**
   * Sends {"type":"refresh","token":...} on the open connection (pushd --auth=jwt moves the
   * connection's expiry); a fixed token is replaced for later connections. False when not open.
   */
  refresh(token: string): boolean;
}

/** The default reconnect policy: not after 1000 unless the reason is 'reconnect'. */
export declare function defaultShouldReconnect(close: { code: number; reason: string }): boolean;

/** What a client can check of a JWT without the key: null when usable, else why not. */
export declare function checkToken(token: string, now?: number): string | null;
