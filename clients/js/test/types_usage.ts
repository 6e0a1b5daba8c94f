// Compiled (not run) by types.test.js with tsc --strict: the declarations match real usage.
import { PushClient, RECONNECT_REASON, checkToken, defaultShouldReconnect } from '../pushclient.js';
import type { PushMessage, PushStateChange, WebSocketConstructor } from '../pushclient.js';

declare const WebSocket: WebSocketConstructor; // the browser's, or the `ws` package's

interface Chat {
  text: string;
}

const client = new PushClient<Chat>({
  url: 'wss://push.example.com/ws',
  userId: 'alice',
  deviceId: 'phone-1',
  ack: true,
  lastSeq: 3,
  minDelay: 250,
  WebSocket,
  shouldReconnect: ({ code, reason }) => code !== 1000 || reason === RECONNECT_REASON,
});
const off = client.on('message', (m: PushMessage<Chat>) => {
  const text: string = m.data.text;
  const seq: number = m.seq;
  void text;
  void seq;
});
off();
client.on('gap', ({ from, to }) => console.log(from + to));
client.on('state', (s: PushStateChange) => {
  if (s.state === 'reconnecting') console.log(s.delay, s.error?.kind);
});
client.on('error', (e) => console.log(e.kind, e.message, e.status));
client.on('reset', (r) => console.log(r.lastSeq, r.seq));
client.on('welcome', (w) => {
  const device: string | null = w.deviceId;
  void device;
});
const device: string | null = client.deviceId;
void device;
client.connect();
const sent: boolean = client.ack(client.lastSeq);
void sent;
client.close();

const byToken = new PushClient({ token: async () => 'a.b.c' });
byToken.refresh('x.y.z');
const problem: string | null = checkToken('a.b.c');
const again: boolean = defaultShouldReconnect({ code: 1006, reason: '' });
void problem;
void again;

// @ts-expect-error: userId and token are exclusive
new PushClient({ userId: 'a', token: 'b' });
// @ts-expect-error: one of them is required
new PushClient({ url: 'ws://x/ws' });
// @ts-expect-error: deviceId is a string
new PushClient({ userId: 'a', deviceId: 7 });
// @ts-expect-error: no such event
client.on('messages', () => {});
