import type { IncomingMessage } from 'node:http';
import { CloseCode, handleProtocols, makeServer, type ServerOptions } from 'graphql-ws';
import type { WebSocket, WebSocketServer } from 'ws';

/** What every graphql-ws hook finds in ctx.extra: the socket, its upgrade request, and variables set aside. */
export interface WsExtra {
  readonly socket: WebSocket;
  readonly request: IncomingMessage;
  /** The variables of subscribe messages, by operation id, until onSubscribe takes them (takeVariables). */
  readonly variables: Map<string, unknown>;
}

/** The variables a subscribe message carried; each is handed over once. */
export function takeVariables(extra: WsExtra, id: string): unknown {
  const variables = extra.variables.get(id);
  extra.variables.delete(id);
  return variables;
}

/**
 * graphql-ws keeps the text of a subscribe message for the subscription's whole life (its message handler
 * runs until the subscription ends). So the variables are taken out of the text before it gets there, and
 * the operation keeps only those it declares (see onSubscribe). Anything that is not a well-formed
 * subscribe message goes through untouched: graphql-ws answers it.
 */
function setVariablesAside(text: string, held: Map<string, unknown>): string {
  if (!text.includes('"variables"') && !text.includes('"extensions"')) return text;
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return text;
  }
  if (!isSubscribe(message)) return text;
  held.set(message.id, message.payload.variables);
  delete message.payload.variables;
  delete message.payload.extensions; // nothing here reads request extensions
  return JSON.stringify(message);
}

function isSubscribe(message: unknown): message is { id: string; payload: { variables?: unknown; extensions?: unknown } } {
  if (typeof message !== 'object' || message === null) return false;
  const { type, id, payload } = message as Record<string, unknown>;
  return type === 'subscribe' && typeof id === 'string' && typeof payload === 'object' && payload !== null;
}

/**
 * graphql-ws's transport-free core on a `ws` server, in place of its `use/ws` starter, for three reasons:
 * - a peer that leaves is not an error: the starter rejects the pending send of every open subscription
 *   with EPIPE and prints each to the console; here a send to a closing socket just resolves;
 * - a frame over the size bound makes `ws` close with 1009 and emit an error the starter prints; here the
 *   close is the whole answer;
 * - a peer that does not answer a ping within one interval is dropped (the interval is configured);
 * - a subscription must not hold on to a client's variables (setVariablesAside).
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

    const variables = new Map<string, unknown>();
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
            handle(setVariablesAside(data.toString(), variables)).catch((error: unknown) => {
              onInternalError(error);
              socket.close(CloseCode.InternalServerError, 'Internal server error');
            });
          }),
      },
      { socket, request, variables } as WsExtra & Partial<E>,
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
