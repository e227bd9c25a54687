import { requireAdmin } from './access';
import { UnavailableError } from './errors';
import { isPromotionId } from './identifiers';
import type { AuditRepository, Clock, PromotionRepository, ReservationStore } from './ports';
import type { Caller, PromotionAudit } from './types';

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

  /** Every promotion the consumers still read (created, not retired). */
  async checkAll(): Promise<PromotionAudit[]> {
    const ids = await this.reservations.activePromotionIds();
    const audits: PromotionAudit[] = [];
    for (const id of ids.sort()) {
      const audit = await this.check(id);
      if (audit) audits.push(audit);
    }
    return audits;
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
