import type { IncomingMessage } from 'node:http';
import { CloseCode, handleProtocols, makeServer, type ServerOptions } from 'graphql-ws';
import type { WebSocket, WebSocketServer } from 'ws';

/** What every graphql-ws hook finds in ctx.extra: the socket and its upgrade request. */
export interface WsExtra {
  readonly socket: WebSocket;
  readonly request: IncomingMessage;
}

/**
 * graphql-ws's transport-free core on a `ws` server, in place of its `use/ws` starter, for three reasons:
 * - a peer that leaves is not an error: the starter rejects the pending send of every open subscription
 *   with EPIPE and prints each to the console; here a send to a closing socket just resolves;
 * - a frame over the size bound makes `ws` close with 1009 and emit an error the starter prints; here the
 *   close is the whole answer;
 * - a peer that does not answer a ping within one interval is dropped (the interval is configured).
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
            handle(data.toString()).catch((error: unknown) => {
              onInternalError(error);
              socket.close(CloseCode.InternalServerError, 'Internal server error');
            });
          }),
      },
      { socket, request } as WsExtra & Partial<E>,
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
