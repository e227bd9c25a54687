/**
 * A constant-arrival-rate HTTP/1.1 client (open loop): request k is due at start + k / rate whether or not
 * earlier ones were answered, so a slow server shows up as latency instead of as a lower offered rate.
 * Latency counts from the due time (no coordinated omission). Pre-built request bytes on keep-alive sockets
 * (node:net, no http module) keep the client's CPU low.
 */
import { connect, type Socket } from 'node:net';

export interface OpenLoopRequest {
  /** Index into the urls the client was given (spreading load over processes). */
  target: number;
  bytes: Buffer;
  /** Called with the answer's status and body and the time it arrived (performance.now()). */
  onAnswer?: (status: number, body: string, atMs: number) => void;
}

export interface OpenLoopResult {
  due: number;
  answered: number;
  failed: number;
  latenciesMs: number[];
  /** Answers per whole second since the start. */
  perSecond: number[];
  /** Highest number of sockets open at once. */
  sockets: number;
}

export function buildRequest(url: URL, body: string, authorization?: string): Buffer {
  const head =
    `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\n` +
    (authorization ? `Authorization: ${authorization}\r\n` : '') +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  return Buffer.from(head + body);
}

/**
 * One complete HTTP/1.1 response at the start of buf (Content-Length or chunked), or null while incomplete.
 * Enough for answers from Node servers; not a general parser (no trailers, no 1xx).
 */
export function parseResponse(buf: Buffer): { status: number; body: string; consumed: number } | null {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const head = buf.subarray(0, headEnd).toString('latin1');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? NaN);
  let at = headEnd + 4;
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', at);
      if (lineEnd < 0) return null;
      const size = parseInt(buf.subarray(at, lineEnd).toString('latin1'), 16);
      if (!Number.isFinite(size)) throw new Error('bad chunk size');
      const dataEnd = lineEnd + 2 + size;
      if (buf.length < dataEnd + 2) return null;
      if (size === 0) return { status, body: Buffer.concat(parts).toString('utf8'), consumed: dataEnd + 2 };
      parts.push(buf.subarray(lineEnd + 2, dataEnd));
      at = dataEnd + 2;
    }
  }
  const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
  if (buf.length < at + length) return null;
  return { status, body: buf.subarray(at, at + length).toString('utf8'), consumed: at + length };
}

interface Conn {
  socket: Socket;
  target: number;
  buffer: Buffer;
  current: { request: OpenLoopRequest; dueMs: number } | null;
}

export function runOpenLoop(args: {
  urls: URL[];
  requests: OpenLoopRequest[];
  ratePerSecond: number;
  maxSockets: number;
  /** Stop waiting for answers this long after the last request was due. */
  graceMs: number;
}): Promise<OpenLoopResult> {
  const { urls, requests, ratePerSecond } = args;
  const idle: Conn[][] = urls.map(() => []);
  const waiting: { request: OpenLoopRequest; dueMs: number }[][] = urls.map(() => []);
  const result: OpenLoopResult = { due: 0, answered: 0, failed: 0, latenciesMs: [], perSecond: [], sockets: 0 };
  let open = 0;
  const start = performance.now();

  return new Promise((resolve) => {
    let finished = false;
    const all: Conn[] = [];
    const finish = () => {
      if (finished) return;
      finished = true;
      clearInterval(ticker);
      clearTimeout(deadline);
      for (const c of all) c.socket.destroy();
      resolve(result);
    };
    const settle = () => {
      if (result.due === requests.length && result.answered + result.failed === requests.length) finish();
    };

    const send = (conn: Conn, job: { request: OpenLoopRequest; dueMs: number }) => {
      conn.current = job;
      conn.socket.write(job.request.bytes);
    };
    const release = (conn: Conn) => {
      conn.current = null;
      const next = waiting[conn.target]?.shift();
      if (next) send(conn, next);
      else idle[conn.target]?.push(conn);
    };
    const openConn = (target: number): Conn => {
      const url = urls[target] as URL;
      const socket = connect(Number(url.port), url.hostname);
      socket.setNoDelay(true);
      const conn: Conn = { socket, target, buffer: Buffer.alloc(0), current: null };
      all.push(conn);
      result.sockets = Math.max(result.sockets, ++open);
      socket.on('data', (chunk: Buffer) => {
        conn.buffer = conn.buffer.length ? Buffer.concat([conn.buffer, chunk]) : chunk;
        const parsed = parseResponse(conn.buffer);
        if (!parsed) return;
        conn.buffer = conn.buffer.subarray(parsed.consumed);
        const { status, body } = parsed;
        const job = conn.current;
        if (!job) return;
        const now = performance.now();
        result.answered++;
        result.latenciesMs.push(now - job.dueMs);
        const second = Math.floor((now - start) / 1000);
        result.perSecond[second] = (result.perSecond[second] ?? 0) + 1;
        job.request.onAnswer?.(status, body, now);
        release(conn);
        settle();
      });
      const lost = () => {
        open--;
        if (conn.current) {
          result.failed++;
          conn.current = null;
          settle();
        }
        const list = idle[target] as Conn[];
        const at = list.indexOf(conn);
        if (at >= 0) list.splice(at, 1);
      };
      socket.on('error', () => undefined);
      socket.on('close', lost);
      return conn;
    };

    const ticker = setInterval(() => {
      const dueNow = Math.min(requests.length, Math.floor(((performance.now() - start) * ratePerSecond) / 1000) + 1);
      while (result.due < dueNow) {
        const request = requests[result.due] as OpenLoopRequest;
        const job = { request, dueMs: start + (result.due * 1000) / ratePerSecond };
        result.due++;
        const conn = idle[request.target]?.pop() ?? (open < args.maxSockets ? openConn(request.target) : null);
        if (conn) send(conn, job);
        else waiting[request.target]?.push(job);
      }
      settle();
    }, 2);
    const deadline = setTimeout(finish, (requests.length * 1000) / ratePerSecond + args.graceMs);
  });
}
