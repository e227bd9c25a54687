import { ForbiddenError, UnauthenticatedError } from './errors';
import type { Actor, Caller } from './types';

export function requireUser(caller: Caller | null): Caller {
  if (!caller) throw new UnauthenticatedError();
  return caller;
}

export function requireAdmin(caller: Caller | null): Caller {
  const user = requireUser(caller);
  if (!user.isAdmin) throw new ForbiddenError('Admin role required');
  return user;
}

export function canSee(caller: Caller, ownerId: string): boolean {
  return caller.isAdmin || caller.userId === ownerId;
}

/** The shop's checkout backend (merchant) or an admin: who may redeem and cancel, named for the trail. */
export function requireCheckout(caller: Caller | null): Actor {
  const user = requireUser(caller);
  if (user.isAdmin) return { userId: user.userId, role: 'admin' };
  if (user.isMerchant) return { userId: user.userId, role: 'merchant' };
  throw new ForbiddenError('Merchant or admin role required');
}

/** A coupon is seen by its owner, merchants (at checkout) and admins. */
export function canSeeCoupon(caller: Caller, ownerId: string): boolean {
  return caller.isAdmin || caller.isMerchant || caller.userId === ownerId;
}
