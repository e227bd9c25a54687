import WebSocket, { type ClientOptions } from 'ws';

/**
 * A graphql-transport-ws client at the message level, for tests that play a misbehaving client: it
 * sends what it is told, buffers every message and reports how the socket closed.
 */
export interface RawMessage {
  type: string;
  id?: string;
  payload?: unknown;
}

export interface RawSocket {
  ws: WebSocket;
  messages: RawMessage[];
  closed: Promise<{ code: number; reason: string }>;
  /** Sends connection_init and resolves on connection_ack; rejects if the socket closes first. */
  init(authorization?: string): Promise<void>;
  subscribe(id: string, query: string, variables?: Record<string, unknown>): void;
  /** The first message for `id` of one of the final types (next, error or complete), waiting for it. */
  waitFor(predicate: (m: RawMessage) => boolean, timeoutMs?: number): Promise<RawMessage>;
}

export function openRaw(baseUrl: string, options: ClientOptions = {}): Promise<RawSocket> {
  const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', options);
  const messages: RawMessage[] = [];
  const listeners = new Set<() => void>();
  ws.on('message', (data: Buffer) => {
    messages.push(JSON.parse(data.toString()) as RawMessage);
    for (const listener of listeners) listener();
  });
  ws.on('error', () => undefined); // the close event tells the test what happened
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      for (const listener of listeners) listener();
    }),
  );

  const waitFor = (predicate: (m: RawMessage) => boolean, timeoutMs = 10_000) =>
    new Promise<RawMessage>((resolve, reject) => {
      const check = () => {
        const found = messages.find(predicate);
        if (found) {
          done();
          resolve(found);
        } else if (ws.readyState === WebSocket.CLOSED) {
          done();
          reject(new Error(`socket closed before the expected message; got ${JSON.stringify(messages).slice(0, 500)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no expected message within ${timeoutMs} ms; got ${JSON.stringify(messages).slice(0, 500)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });

  const socket: RawSocket = {
    ws,
    messages,
    closed,
    init: async (authorization) => {
      ws.send(JSON.stringify({ type: 'connection_init', payload: authorization ? { authorization } : {} }));
      await waitFor((m) => m.type === 'connection_ack');
    },
    subscribe: (id, query, variables) => ws.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } })),
    waitFor,
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(socket));
    ws.once('error', reject);
  });
}

/** The messages a subscription got that end it, or its error: what a client sees first. */
export const endOf = (id: string) => (m: RawMessage) => m.id === id && (m.type === 'error' || m.type === 'next' || m.type === 'complete');
