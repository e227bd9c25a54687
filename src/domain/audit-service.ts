import { requireAdmin } from './access';
import { UnavailableError } from './errors';
import { isPromotionId } from './identifiers';
import type { AuditRepository, Clock, PromotionRepository, ReservationStore } from './ports';
import { RECONCILE_OVER_WINDOW_MS } from './promotion-service';
import type { Caller, PromotionAudit } from './types';

/** One promotion's audit, or why it could not be checked (Redis holds nothing for it, say). */
export type AuditOutcome = { promotionId: string; audit: PromotionAudit } | { promotionId: string; error: Error };

/**
 * The books of a promotion: remainingStock (Redis) + coupons stored (PostgreSQL) + requests in flight (the
 * stream) must equal totalStock, and no user may hold more than perUserLimit. Redis is read first, in one
 * script; PostgreSQL then counts only the reservations made before that read, so the terms describe one
 * moment even while the sale and the consumers go on.
 */
export class AuditService {
  constructor(
    private readonly reservations: ReservationStore,
    private readonly audit: AuditRepository,
    private readonly promotions: PromotionRepository,
    private readonly clock: Clock,
  ) {}

  /** Admin only; null for an unknown promotion. */
  async promotionAudit(caller: Caller | null, promotionId: string): Promise<PromotionAudit | null> {
    requireAdmin(caller);
    return this.check(promotionId);
  }

  /**
   * Every promotion Redis should still serve, listed from PostgreSQL (not over, or over within the window
   * reconciliation repairs): a Redis that lost its data cannot make the list empty. A promotion that cannot be
   * checked gives its error, and the others are still checked.
   */
  async checkAll(): Promise<AuditOutcome[]> {
    const overSince = new Date(this.clock.now().getTime() - RECONCILE_OVER_WINDOW_MS);
    const ids = (await this.promotions.listRecent(overSince)).map((r) => r.id).sort();
    const outcomes: AuditOutcome[] = [];
    for (const promotionId of ids) {
      try {
        const audit = await this.check(promotionId);
        if (audit) outcomes.push({ promotionId, audit });
      } catch (error) {
        outcomes.push({ promotionId, error: error instanceof Error ? error : new Error(String(error)) });
      }
    }
    return outcomes;
  }

  async check(promotionId: string): Promise<PromotionAudit | null> {
    if (!isPromotionId(promotionId)) return null;
    const snapshot = await this.reservations.auditSnapshot(promotionId);
    const record = await this.promotions.findById(promotionId);
    if (!record) return null;
    const checkedAt = this.clock.now();
    if (!snapshot) {
      if (await this.reservations.hasPromotion(promotionId)) {
        // Retired: an ended promotion whose queue drained and whose counters expired. PostgreSQL alone remains.
        const terms = await this.audit.termsAt({ promotionId, reservations: 2 ** 31 - 1, perUserLimit: record.perUserLimit, inFlight: [] });
        const remainingStock = Math.max(0, record.totalStock - terms.persisted);
        return {
          promotionId,
          totalStock: record.totalStock,
          remainingStock,
          persisted: terms.persisted,
          inFlight: 0,
          failed: terms.failed,
          usersOverLimit: terms.usersOverLimit,
          holds: terms.persisted <= record.totalStock && terms.usersOverLimit === 0,
          checkedAt,
        };
      }
      throw new UnavailableError('Redis holds no state for this promotion: it is being rebuilt from PostgreSQL', 1000);
    }
    const terms = await this.audit.termsAt({
      promotionId,
      reservations: snapshot.reservations,
      perUserLimit: snapshot.perUserLimit,
      inFlight: snapshot.inFlight,
    });
    const inFlight = snapshot.inFlight.length - terms.storedInFlight;
    return {
      promotionId,
      totalStock: snapshot.totalStock,
      remainingStock: snapshot.remainingStock,
      persisted: terms.persisted,
      inFlight,
      failed: terms.failed,
      usersOverLimit: terms.usersOverLimit,
      holds: snapshot.remainingStock + terms.persisted + inFlight === snapshot.totalStock && terms.usersOverLimit === 0,
      checkedAt,
    };
  }
}
