/**
 * A child process that holds the subscribed users' WebSockets (graphql-transport-ws, one `couponIssued`
 * subscription each) and sends those users' mutations at a constant rate, so that answer→ISSUED is timed
 * in one process: from the HTTP answer QUEUED to the ISSUED event for that requestId on the user's socket.
 * Out of the bench process so that neither its memory nor its event loop is counted with the bench's.
 *
 * Driven over IPC by bench/sockets.ts: open → (fire)* → close.
 */
import WebSocket from 'ws';
import { buildRequest, runOpenLoop, type OpenLoopRequest } from './open-loop';

export type WorkerCommand =
  | { type: 'open'; wsUrls: string[]; authorizations: string[]; promotionId: string; concurrency: number; timeoutMs: number }
  | { type: 'fire'; httpUrls: string[]; users: number[]; body: string; ratePerSecond: number; maxSockets: number; confirmTimeoutMs: number }
  | { type: 'close' };

export type WorkerReply =
  | { type: 'opened'; open: number; failed: number; seconds: number; rssBytes: number; compressed: number }
  | {
      type: 'fired';
      due: number;
      answered: number;
      failed: number;
      outcomes: Record<string, number>;
      httpLatenciesMs: number[];
      perSecond: number[];
      /** answer→ISSUED, ms, for every QUEUED answer whose ISSUED event arrived. */
      confirmationsMs: number[];
      /** QUEUED answers whose ISSUED event did not arrive within confirmTimeoutMs. */
      unconfirmed: number;
      /** Sockets closed by the server while firing (e.g. 4503 for a backlog overflow). */
      closedMeanwhile: number;
    }
  | { type: 'error'; message: string };

const SUBSCRIBE = 'subscription Issued($p: ID) { couponIssued(promotionId: $p) { requestId status } }';

const sockets: WebSocket[] = [];
/** requestId → when its ISSUED event arrived / when its QUEUED answer arrived (performance.now()). */
const issuedAt = new Map<string, number>();
const answeredAt = new Map<string, number>();
let closedByServer = 0;
/** Sockets on which the server accepted permessage-deflate (offered, as browsers do): zlib state per socket. */
let compressed = 0;

const reply = (message: WorkerReply) => process.send?.(message);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

function openOne(url: string, authorization: string, promotionId: string): Promise<boolean> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, 'graphql-transport-ws');
    let subscribed = false;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization } })));
    ws.on('message', (data: Buffer) => {
      const text = data.toString();
      if (!subscribed && text.includes('"connection_ack"')) {
        subscribed = true;
        ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: SUBSCRIBE, variables: { p: promotionId } } }));
        sockets.push(ws);
        if (ws.extensions.includes('permessage-deflate')) compressed++;
        resolve(true);
        return;
      }
      if (text.includes('"ISSUED"')) {
        const id = /"requestId":"([^"]+)"/.exec(text)?.[1];
        if (id) issuedAt.set(id, performance.now());
      }
    });
    ws.on('error', () => resolve(false));
    ws.on('close', () => {
      if (subscribed) closedByServer++;
      resolve(false);
    });
  });
}

async function open(command: Extract<WorkerCommand, { type: 'open' }>): Promise<void> {
  const started = performance.now();
  let next = 0;
  let ok = 0;
  let failed = 0;
  const deadline = Date.now() + command.timeoutMs;
  // A bounded number of handshakes in flight: the server's upgrade path is what is paced, not the kernel.
  const lane = async () => {
    while (next < command.authorizations.length && Date.now() < deadline) {
      const i = next++;
      const url = command.wsUrls[i % command.wsUrls.length] as string;
      if (await openOne(url, command.authorizations[i] as string, command.promotionId)) ok++;
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: command.concurrency }, lane));
  closedByServer = 0;
  reply({ type: 'opened', open: ok, failed, seconds: (performance.now() - started) / 1000, rssBytes: process.memoryUsage().rss, compressed });
}

async function fire(command: Extract<WorkerCommand, { type: 'fire' }>, authorizations: string[]): Promise<void> {
  const urls = command.httpUrls.map((u) => new URL(u));
  const outcomes: Record<string, number> = {};
  const queued: string[] = [];
  const requests: OpenLoopRequest[] = command.users.map((user, k) => ({
    target: k % urls.length,
    bytes: buildRequest(urls[k % urls.length] as URL, command.body, authorizations[user]),
    onAnswer: (status, body, atMs) => {
      const outcome = status === 200 ? (/"outcome":"([A-Z_]+)"/.exec(body)?.[1] ?? 'other') : `HTTP ${status}`;
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      const id = outcome === 'QUEUED' ? /"requestId":"([^"]+)"/.exec(body)?.[1] : undefined;
      if (id) {
        answeredAt.set(id, atMs);
        queued.push(id);
      }
    },
  }));
  closedByServer = 0;
  const load = await runOpenLoop({ urls, requests, ratePerSecond: command.ratePerSecond, maxSockets: command.maxSockets, graceMs: 15_000 });
  // Confirmations still on their way when the last answer came.
  const until = performance.now() + command.confirmTimeoutMs;
  while (queued.some((id) => !issuedAt.has(id)) && performance.now() < until) await sleep(20);
  const confirmationsMs: number[] = [];
  let unconfirmed = 0;
  for (const id of queued) {
    const issued = issuedAt.get(id);
    // An ISSUED event may beat the HTTP answer to this process: its latency is then 0, not negative.
    if (issued === undefined) unconfirmed++;
    else confirmationsMs.push(Math.max(0, issued - (answeredAt.get(id) as number)));
  }
  reply({
    type: 'fired',
    due: load.due,
    answered: load.answered,
    failed: load.failed,
    outcomes,
    httpLatenciesMs: load.latenciesMs,
    perSecond: load.perSecond,
    confirmationsMs,
    unconfirmed,
    closedMeanwhile: closedByServer,
  });
}

let authorizations: string[] = [];
process.on('message', (command: WorkerCommand) => {
  const run = async () => {
    if (command.type === 'open') {
      authorizations = command.authorizations;
      await open(command);
    } else if (command.type === 'fire') {
      await fire(command, authorizations);
    } else {
      for (const ws of sockets) ws.terminate();
      process.exit(0);
    }
  };
  run().catch((error: unknown) => reply({ type: 'error', message: String(error) }));
});
process.on('disconnect', () => process.exit(0));
