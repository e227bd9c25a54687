import { InputError } from '../../src/domain/errors';

/** A fixed "now" for the domain rules' tests, and a time relative to it. */
export const now = new Date('2026-12-01T12:00:00Z');
export const at = (offsetMs: number) => new Date(now.getTime() + offsetMs);

/** The field an InputError names; null when the call passes, 'not an InputError' for any other error. */
export function fieldOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (error) {
    return error instanceof InputError ? error.field : 'not an InputError';
  }
}
