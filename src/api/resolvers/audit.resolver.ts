import { Arg, Ctx, ID, Int, Query, Resolver } from 'type-graphql';
import type { AuditService } from '../../domain/audit-service';
import type { IssuanceService } from '../../domain/issuance-service';
import type { GraphQLContext } from '../context';
import { DeadLetterType, PromotionAuditType } from '../types/audit.type';

@Resolver()
export class AuditResolver {
  constructor(
    private readonly auditService: AuditService,
    private readonly issuanceService: IssuanceService,
  ) {}

  @Query(() => PromotionAuditType, { nullable: true, description: "admin: the invariant's terms, read live" })
  promotionAudit(@Arg('id', () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<PromotionAuditType | null> {
    return this.auditService.promotionAudit(ctx.caller, id);
  }

  @Query(() => [DeadLetterType], { description: 'admin: requests that ended FAILED, newest first (kept in PostgreSQL)' })
  deadLetters(
    @Arg('promotionId', () => ID) promotionId: string,
    @Arg('first', () => Int, { nullable: true, defaultValue: 50 }) first: number | null,
    @Arg('after', () => ID, { nullable: true }) after: string | null,
    @Ctx() ctx: GraphQLContext,
  ): Promise<DeadLetterType[]> {
    return this.issuanceService.deadLetters(ctx.caller, promotionId, first ?? 50, after ?? null);
  }
}
