import type { IncomingMessage } from 'node:http';
import { CloseCode, handleProtocols, makeServer, type ServerOptions } from 'graphql-ws';
import type { WebSocket, WebSocketServer } from 'ws';

/** What a subscribe message carried that graphql-ws is not given to hold: its document text and variables. */
export interface SetAside {
  id: string;
  query: unknown;
  variables: unknown;
}

/** What every graphql-ws hook finds in ctx.extra: the socket, its upgrade request, and what was set aside. */
export interface WsExtra {
  readonly socket: WebSocket;
  /**
   * The upgrade request, for onConnect to read the client's address from: dropped as soon as connection_init
   * has been handled (it holds the headers and the socket's parser state for the connection's whole life).
   */
  request: IncomingMessage | null;
  /** The document text and variables of the subscribe message being handled, until onSubscribe takes them. */
  setAside: SetAside | null;
}

/** What a subscribe message carried, handed over once; undefined for one that went through untouched. */
export function takeSetAside(extra: WsExtra, id: string): SetAside | undefined {
  const held = extra.setAside;
  if (!held || held.id !== id) return undefined;
  extra.setAside = null;
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
function setAside(text: string, extra: WsExtra): string {
  if (!text.includes('"subscribe"')) return text;
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return text;
  }
  if (!isSubscribe(message)) return text;
  extra.setAside = { id: message.id, query: message.payload.query, variables: message.payload.variables };
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

/** setTimeout's ceiling (about 24.8 days): a later deadline is waited for in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Deadlines are grouped by this many ms, and met at most this late: the groups, not the sockets, get timers. */
const DEADLINE_GRAIN_MS = 100;

/**
 * Deadlines for many sockets on one timer: the sockets due within the same DEADLINE_GRAIN_MS share a group,
 * one timer waits for the earliest group. A socket costs an entry in its group, not a timer and its closures
 * (with 100,000 sockets that is megabytes). A socket that closes first leaves its group at once.
 */
export class Deadlines<T> {
  /**
   * Every due time in the heap, with its group; null once its sockets have all left (the time stays in the heap
   * until reached, and a socket due then again reuses it: each time is in the heap once, whatever the churn).
   */
  private readonly groups = new Map<number, Set<T> | null>();
  /** The groups' due times, a binary min-heap; a time whose group is empty is skipped when reached. */
  private readonly heap: number[] = [];
  private timer: NodeJS.Timeout | null = null;
  private armedFor = Infinity;

  constructor(private readonly onDue: (item: T) => void) {}

  /** Runs onDue(item) at `atMs` (epoch ms), or up to DEADLINE_GRAIN_MS after; returns the group's key for remove(). */
  add(item: T, atMs: number): number {
    const due = Math.ceil(atMs / DEADLINE_GRAIN_MS) * DEADLINE_GRAIN_MS;
    let group = this.groups.get(due);
    if (group === undefined) this.push(due);
    if (!group) {
      group = new Set();
      this.groups.set(due, group);
    }
    group.add(item);
    if (due < this.armedFor) this.arm();
    return due;
  }

  /** How many due times wait in the heap (a time whose group is empty counts until it is reached). */
  get scheduled(): number {
    return this.heap.length;
  }

  remove(item: T, due: number): void {
    const group = this.groups.get(due);
    if (!group) return;
    group.delete(item);
    if (group.size === 0) this.groups.set(due, null);
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const next = this.heap[0];
    this.armedFor = next ?? Infinity;
    if (next === undefined) return;
    this.timer = setTimeout(() => this.fire(), Math.min(MAX_TIMER_MS, Math.max(0, next - Date.now())));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = null;
    const now = Date.now();
    for (let next = this.heap[0]; next !== undefined && next <= now; next = this.heap[0]) {
      this.pop();
      const group = this.groups.get(next);
      this.groups.delete(next);
      if (group) for (const item of group) this.onDue(item);
    }
    this.arm();
  }

  private push(value: number): void {
    const heap = this.heap;
    let i = heap.push(value) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((heap[parent] as number) <= value) break;
      heap[i] = heap[parent] as number;
      i = parent;
    }
    heap[i] = value;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop() as number;
    if (heap.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && (heap[right] as number) < (heap[left] as number) ? right : left;
      if ((heap[child] as number) >= last) break;
      heap[i] = heap[child] as number;
      i = child;
    }
    heap[i] = last;
  }
}

/** A close frame holds at most 123 bytes of reason (`ws` throws past that). */
const MAX_CLOSE_REASON_BYTES = 123;

/**
 * graphql-ws puts client text in some close reasons (the id of a reused subscription, 4409): cut to what a close
 * frame holds, so a long id still gets its close code instead of an error of ours (4500, logged).
 */
function closeReason(reason: string): string {
  if (Buffer.byteLength(reason) <= MAX_CLOSE_REASON_BYTES) return reason;
  let cut = reason.slice(0, MAX_CLOSE_REASON_BYTES - 3);
  while (Buffer.byteLength(cut) > MAX_CLOSE_REASON_BYTES - 3) cut = cut.slice(0, -1);
  return `${cut}...`;
}

const CONNECTION = Symbol('graphql-ws connection');
type Tracked = WebSocket & { [CONNECTION]?: Connection };
const connectionOf = (socket: WebSocket) => (socket as Tracked)[CONNECTION] as Connection;
/** The graphql-transport-ws code for a client that sent no connection_init in time (graphql-ws's own). */
const CONNECTION_INIT_WAIT_MS = 3000;
const CLOSE_TOKEN_EXPIRED = 4403;

/**
 * One socket: graphql-ws's view of it (protocol, send, close, onMessage) and the state kept here, in one object.
 * The socket's listeners are shared functions that find it on the socket: no closures per socket.
 */
class Connection implements WsExtra {
  request: IncomingMessage | null;
  setAside: SetAside | null = null;
  handle: ((data: string) => Promise<void>) | null = null;
  closed: ((code: number, reason: string) => Promise<void>) | null = null;
  /** Whether graphql-ws was given connection_init (its onConnect ran). */
  initialised = false;
  /** The heartbeat tick at which this socket is pinged next, or, when awaitingPong, dropped. */
  nextBeat: number;
  awaitingPong = false;
  /** The group of its token's expiry in the transport's deadlines, or -1. */
  expiry = -1;

  constructor(
    readonly socket: WebSocket,
    request: IncomingMessage,
    private readonly transport: Transport,
    firstBeat: number,
  ) {
    this.request = request;
    this.nextBeat = firstBeat;
  }

  get protocol(): string {
    return this.socket.protocol;
  }

  send(data: string): Promise<void> {
    const socket = this.socket;
    return new Promise<void>((resolve) => {
      if (socket.readyState !== socket.OPEN) return resolve();
      // A failed write means the peer is gone; its 'close' ends the subscriptions.
      socket.send(data, () => resolve());
    });
  }

  close(code: number, reason: string): void {
    this.socket.close(code, closeReason(reason));
  }

  onMessage(handle: (data: string) => Promise<void>): void {
    this.handle = handle;
  }

  /** An error of ours while handling a message: logged, and the client told so. */
  failed(error: unknown): void {
    this.transport.onInternalError(error);
    this.socket.close(CloseCode.InternalServerError, 'Internal server error');
  }

  /** Closes the socket with 4403 at `expiresAtMs` (epoch ms) unless it has closed by then. */
  closeAt(expiresAtMs: number): void {
    if (this.expiry >= 0) this.transport.expiries.remove(this, this.expiry);
    this.expiry = this.transport.expiries.add(this, expiresAtMs);
  }
}

/** Closes a socket's connection when its token expires, with the same code as a bad token. */
export function closeAtExpiry(extra: WsExtra, expiresAtMs: number): void {
  (extra as Connection).closeAt(expiresAtMs);
}

interface Transport {
  expiries: Deadlines<Connection>;
  onInternalError: (error: unknown) => void;
}

function onSocketMessage(this: WebSocket, data: Buffer): void {
  const connection = connectionOf(this);
  if (!connection.handle) return; // graphql-ws refused the subprotocol and closed the socket
  const text = setAside(data.toString(), connection);
  connection.handle(text).catch((error: unknown) => connection.failed(error));
  // onSubscribe runs within handle() before its first await and takes what was set aside; a message
  // graphql-ws refused before asking (a duplicate id, before connection_init) leaves nothing behind.
  connection.setAside = null;
}

function onSocketPong(this: WebSocket): void {
  connectionOf(this).awaitingPong = false;
}

function ignore(): void {}

/**
 * graphql-ws's transport-free core on a `ws` server, in place of its `use/ws` starter, for these reasons:
 * - a peer that leaves is not an error: the starter rejects the pending send of every open subscription
 *   with EPIPE and prints each to the console; here a send to a closing socket just resolves;
 * - a frame over the size bound makes `ws` close with 1009 and emit an error the starter prints; here the
 *   close is the whole answer;
 * - a peer that does not answer a ping within one interval is dropped (the interval is configured);
 * - a subscription must not hold on to a client's document text or variables (setAside);
 * - what a socket costs while it waits is kept small: one object per socket, no timer per socket (the
 *   heartbeat, the connection_init wait and the token expiries run on shared timers), neither the upgrade
 *   request nor the connection_init payload kept once read.
 * Errors that are ours still reach `onInternalError`, which logs them.
 */
export function serveWebSocket<P extends Record<string, unknown> | undefined, E extends Record<PropertyKey, unknown>>(
  options: ServerOptions<P, WsExtra & Partial<E>>,
  wsServer: WebSocketServer,
  pingIntervalMs: number,
  onInternalError: (error: unknown) => void,
  /** Runs when a socket opens, with its upgrade request (which is not kept). */
  onSocketOpened: (extra: WsExtra & Partial<E>, request: IncomingMessage) => void,
  /** Runs as soon as a socket has closed, before graphql-ws ends its subscriptions: give back what it held. */
  onSocketClosed: (extra: WsExtra & Partial<E>, code: number) => void,
): { dispose(): Promise<void> } {
  const userOnConnect = options.onConnect;
  const server = makeServer<P, WsExtra & Partial<E>>({
    ...options,
    connectionInitWaitTimeout: 0, // waited for here, on one timer for all sockets
    onConnect: async (ctx) => {
      const connection = ctx.extra as unknown as Connection;
      connection.initialised = true;
      try {
        return await userOnConnect?.(ctx);
      } finally {
        // Read once: neither the upgrade request nor the token sent with connection_init is kept for the socket's life.
        connection.request = null;
        (ctx as { connectionParams?: unknown }).connectionParams = undefined;
      }
    },
  });
  wsServer.options.handleProtocols = handleProtocols;
  const transport: Transport = {
    expiries: new Deadlines((connection) => {
      connection.expiry = -1;
      connection.socket.close(CLOSE_TOKEN_EXPIRED, 'Token expired');
    }),
    onInternalError,
  };

  // The heartbeat ticks twice an interval: a socket is pinged an interval after the previous ping (its first
  // between half an interval and an interval after it opened) and dropped when that ping is still unanswered
  // at the next, so a dead peer goes within two intervals, as with a timer per socket.
  const tickMs = Math.max(1, Math.floor(pingIntervalMs / 2));
  let tick = 0;
  const heartbeat = setInterval(() => {
    tick++;
    for (const client of wsServer.clients) {
      const connection = (client as Tracked)[CONNECTION];
      if (!connection || connection.nextBeat > tick) continue;
      if (connection.awaitingPong) {
        client.terminate();
        continue;
      }
      connection.awaitingPong = true;
      connection.nextBeat = tick + 2;
      client.ping();
    }
  }, tickMs);
  heartbeat.unref();

  // Sockets still without connection_init, in the order they opened: their deadlines come in that order. The
  // wait is a duration, measured on the monotonic clock: a step of the wall clock neither ends it early nor
  // stretches it (graphql-ws's own timer, a setTimeout per socket, behaved so too).
  const awaitingInit: { connection: Connection; deadline: number }[] = [];
  let initTimer: NodeJS.Timeout | null = null;
  const checkInit = () => {
    initTimer = null;
    const now = performance.now();
    while (awaitingInit.length > 0 && (awaitingInit[0] as { deadline: number }).deadline <= now) {
      const { connection } = awaitingInit.shift() as { connection: Connection };
      if (!connection.initialised) connection.socket.close(CloseCode.ConnectionInitialisationTimeout, 'Connection initialisation timeout');
    }
    const first = awaitingInit[0];
    if (first) {
      initTimer = setTimeout(checkInit, Math.max(0, first.deadline - now));
      initTimer.unref();
    }
  };

  wsServer.on('connection', (socket, request) => {
    const connection = new Connection(socket, request, transport, tick + 2);
    (socket as Tracked)[CONNECTION] = connection;
    socket.on('error', ignore); // `ws` closes the socket itself (1009, 1002, ...) and 'close' follows
    socket.on('pong', onSocketPong);
    socket.on('message', onSocketMessage);
    socket.on('close', onSocketClose); // 'close' comes once: `on` spares the wrapper `once` makes

    try {
      onSocketOpened(connection as unknown as WsExtra & Partial<E>, request);
    } catch (error) {
      onInternalError(error);
    }
    connection.closed = server.opened(connection, connection as unknown as WsExtra & Partial<E>);
    if (connection.handle) {
      awaitingInit.push({ connection, deadline: performance.now() + CONNECTION_INIT_WAIT_MS });
      if (!initTimer) {
        initTimer = setTimeout(checkInit, CONNECTION_INIT_WAIT_MS);
        initTimer.unref();
      }
    }
  });

  function onSocketClose(this: WebSocket, code: number, reason: Buffer): void {
    const connection = connectionOf(this);
    if (connection.expiry >= 0) transport.expiries.remove(connection, connection.expiry);
    connection.request = null;
    try {
      onSocketClosed(connection as unknown as WsExtra & Partial<E>, code);
    } catch (error) {
      onInternalError(error);
    }
    connection.closed?.(code, reason.toString()).catch(onInternalError);
  }

  return {
    dispose: async () => {
      clearInterval(heartbeat);
      if (initTimer) clearTimeout(initTimer);
      for (const client of wsServer.clients) client.close(1001, 'Going away');
      wsServer.removeAllListeners('connection');
      await new Promise<void>((resolve, reject) => wsServer.close((error) => (error ? reject(error) : resolve())));
    },
  };
}
