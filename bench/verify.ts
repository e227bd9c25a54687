/**
 * After the load: wait for the consumer to store every queued request, then check the invariant
 * (every QUEUED answer became exactly one coupon row, never beyond the stock) and work out its throughput.
 */
import type { Redis } from 'ioredis';
import type { Client } from 'pg';
import type { LoadResult } from './load';
import type { ConsumerReport, InvariantRow } from './report';
import { couponRows, readCounters, reservations, type CouponRows } from './service';

export interface CheckedPromotion {
  label: string;
  id: string;
  stock: number;
  /** Every load run against it: warm-up included, since its QUEUED answers count too. */
  runs: (LoadResult | null)[];
}

export interface Verification {
  invariants: InvariantRow[];
  consumer: ConsumerReport;
  /** Problems found beyond the invariant table, for the notes. */
  problems: string[];
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

export async function drainAndVerify(args: {
  redis: Redis;
  db: Client;
  baseUrl: string;
  keyPrefix: string;
  promotions: CheckedPromotion[];
  timeoutSeconds: number;
  /** When the QUEUED phase ended, and the backlog then: the consumer's figures are measured from there. */
  queuedPhaseEnd: { atMs: number; backlog: number; promotionId: string };
}): Promise<Verification> {
  const { redis, db, promotions } = args;
  const given = async () => {
    let sum = 0;
    for (const p of promotions) sum += await reservations(redis, args.keyPrefix, p.id);
    return sum;
  };
  const rows = () => Promise.all(promotions.map((p) => couponRows(db, p.id)));
  const total = (all: CouponRows[]) => all.reduce((sum, r) => sum + r.rows, 0);

  // The service's own count of QUEUED answers (the reservation sequences) is what the rows must reach.
  const expected = await given();
  const deadline = Date.now() + args.timeoutSeconds * 1000;
  while (total(await rows()) < expected && Date.now() < deadline) await sleep(100);
  await sleep(500); // a row beyond the expected count, were there one, would show up meanwhile

  const [stored, counters] = await Promise.all([rows(), readCounters(args.baseUrl)]);
  const invariants: InvariantRow[] = [];
  for (const [i, p] of promotions.entries()) {
    invariants.push({
      promotion: p.label,
      stock: p.stock,
      queuedAnswers: p.runs.reduce((sum, r) => sum + (r?.outcomes.get('QUEUED') ?? 0), 0),
      unanswered: p.runs.reduce((sum, r) => sum + (r?.unanswered ?? 0), 0),
      reservations: await reservations(redis, args.keyPrefix, p.id),
      rows: stored[i]?.rows ?? 0,
    });
  }

  const problems: string[] = [];
  const totalRows = total(stored);
  if (totalRows < expected) problems.push(`**The queue did not drain within ${args.timeoutSeconds} s: ${totalRows} of ${expected} coupons stored.**`);
  if (counters.persisted !== totalRows || counters.queued !== totalRows) {
    problems.push(`**/metrics disagree with PostgreSQL**: persisted ${counters.persisted}, QUEUED ${counters.queued}, rows ${totalRows}.`);
  }

  const firstQueuedAtMs = Math.min(...promotions.flatMap((p) => p.runs.map((r) => r?.firstQueuedAtMs ?? Infinity)));
  const lastRowMs = Math.max(0, ...stored.map((r) => r.lastIssuedAtMs ?? 0));
  const queuedLast = stored[promotions.findIndex((p) => p.id === args.queuedPhaseEnd.promotionId)]?.lastIssuedAtMs ?? null;
  return {
    invariants,
    problems,
    consumer: {
      rows: totalRows,
      spanSeconds: Number.isFinite(firstQueuedAtMs) && lastRowMs > 0 ? (lastRowMs - firstQueuedAtMs) / 1000 : null,
      backlogAtQueuedPhaseEnd: args.queuedPhaseEnd.backlog,
      drainedAfterSeconds: queuedLast === null ? null : Math.max(0, queuedLast - args.queuedPhaseEnd.atMs) / 1000,
      metricsPersisted: counters.persisted,
      metricsQueued: counters.queued,
      meanConfirmationMs: counters.meanConfirmationMs,
    },
  };
}
