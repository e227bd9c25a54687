import type { IncomingMessage } from 'node:http';
import { CloseCode, handleProtocols, makeServer, type ServerOptions } from 'graphql-ws';
import type { WebSocket, WebSocketServer } from 'ws';

/** What a subscribe message carried that graphql-ws is not given to hold: its document text and variables. */
export interface SetAside {
  query: unknown;
  variables: unknown;
}

/** What every graphql-ws hook finds in ctx.extra: the socket, its upgrade request, and what was set aside. */
export interface WsExtra {
  readonly socket: WebSocket;
  readonly request: IncomingMessage;
  /** The document text and variables of subscribe messages, by operation id, until onSubscribe takes them (takeSetAside). */
  readonly setAside: Map<string, SetAside>;
}

/** What a subscribe message carried, handed over once; undefined for one that went through untouched. */
export function takeSetAside(extra: WsExtra, id: string): SetAside | undefined {
  const held = extra.setAside.get(id);
  extra.setAside.delete(id);
  return held;
}

/**
 * graphql-ws keeps the text of a subscribe message for the subscription's whole life (its message handler
 * runs until the subscription ends). So the document text and the variables are taken out of the text before
 * it gets there (the query left an empty string, which graphql-ws's check of the message still accepts), and
 * the operation keeps only the parsed document, without locations, and the variables it declares (see
 * onSubscribe). A document's comments are not tokens: without this, a subscription whose text is mostly comment
 * would hold up to a frame's worth. Anything that is not a well-formed subscribe message goes through untouched:
 * graphql-ws answers it.
 */
function setAside(text: string, held: Map<string, SetAside>): string {
  if (!text.includes('"subscribe"')) return text;
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return text;
  }
  if (!isSubscribe(message)) return text;
  held.set(message.id, { query: message.payload.query, variables: message.payload.variables });
  message.payload.query = '';
  delete message.payload.variables;
  delete message.payload.extensions; // nothing here reads request extensions
  return JSON.stringify(message);
}

function isSubscribe(message: unknown): message is { id: string; payload: { query: string; variables?: unknown; extensions?: unknown } } {
  if (typeof message !== 'object' || message === null) return false;
  const { type, id, payload } = message as Record<string, unknown>;
  return (
    type === 'subscribe' &&
    typeof id === 'string' &&
    typeof payload === 'object' &&
    payload !== null &&
    typeof (payload as Record<string, unknown>).query === 'string'
  );
}

/**
 * graphql-ws's transport-free core on a `ws` server, in place of its `use/ws` starter, for three reasons:
 * - a peer that leaves is not an error: the starter rejects the pending send of every open subscription
 *   with EPIPE and prints each to the console; here a send to a closing socket just resolves;
 * - a frame over the size bound makes `ws` close with 1009 and emit an error the starter prints; here the
 *   close is the whole answer;
 * - a peer that does not answer a ping within one interval is dropped (the interval is configured);
 * - a subscription must not hold on to a client's document text or variables (setAside).
 * Errors that are ours still reach `onInternalError`, which logs them.
 */
export function serveWebSocket<P extends Record<string, unknown> | undefined, E extends Record<PropertyKey, unknown>>(
  options: ServerOptions<P, WsExtra & Partial<E>>,
  wsServer: WebSocketServer,
  pingIntervalMs: number,
  onInternalError: (error: unknown) => void,
): { dispose(): Promise<void> } {
  const server = makeServer(options);
  wsServer.options.handleProtocols = handleProtocols;

  wsServer.on('connection', (socket, request) => {
    socket.on('error', () => undefined); // `ws` closes the socket itself (1009, 1002, ...) and 'close' follows

    let alive = true;
    socket.on('pong', () => (alive = true));
    const heartbeat = setInterval(() => {
      if (!alive) return socket.terminate();
      alive = false;
      socket.ping();
    }, pingIntervalMs);
    heartbeat.unref();

    const held = new Map<string, SetAside>();
    const closed = server.opened(
      {
        protocol: socket.protocol,
        send: (data) =>
          new Promise<void>((resolve) => {
            if (socket.readyState !== socket.OPEN) return resolve();
            // A failed write means the peer is gone; its 'close' ends the subscriptions.
            socket.send(data, () => resolve());
          }),
        close: (code, reason) => socket.close(code, reason),
        onMessage: (handle) =>
          socket.on('message', (data: Buffer) => {
            handle(setAside(data.toString(), held)).catch((error: unknown) => {
              onInternalError(error);
              socket.close(CloseCode.InternalServerError, 'Internal server error');
            });
          }),
      },
      { socket, request, setAside: held } as WsExtra & Partial<E>,
    );

    socket.once('close', (code, reason) => {
      clearInterval(heartbeat);
      closed(code, reason.toString()).catch(onInternalError);
    });
  });

  return {
    dispose: async () => {
      for (const client of wsServer.clients) client.close(1001, 'Going away');
      wsServer.removeAllListeners('connection');
      await new Promise<void>((resolve, reject) => wsServer.close((error) => (error ? reject(error) : resolve())));
    },
  };
}
