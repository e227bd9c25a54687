import { ForbiddenError, UnauthenticatedError } from './errors';
import type { Caller } from './types';

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
