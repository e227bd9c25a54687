import { GraphQLError, GraphQLScalarType, Kind } from 'graphql';

const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|([+-])(\d{2}):?(\d{2}))$/;

const daysInMonth = (year: number, month: number) => new Date(Date.UTC(year, month, 0)).getUTCDate();

/**
 * The instant an ISO-8601 string names, or null when it names none. Every field is range-checked first:
 * `new Date('2030-02-30T00:00:00Z')` would quietly roll over to March 2, storing a date nobody meant.
 */
function instant(value: string): Date | null {
  const m = ISO_8601.exec(value);
  if (!m) return null;
  const field = (group: number) => Number(m[group] ?? 0);
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map(field) as [number, number, number, number, number, number];
  const inRange =
    year >= 1 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth(year, month) &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59 &&
    field(10) <= 23 && // offset hours (0 for Z)
    field(11) <= 59;
  if (!inRange) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function parse(value: unknown): Date {
  const date = typeof value === 'string' ? instant(value) : null;
  if (date) return date;
  throw new GraphQLError('DateTime must be an existing ISO-8601 date and time with a time zone, e.g. 2026-12-01T12:00:00Z');
}

/** ISO-8601 in, ISO-8601 UTC out. A time zone is required on input, so no one's local time is guessed. */
export const DateTimeScalar = new GraphQLScalarType<Date, string>({
  name: 'DateTime',
  description: 'ISO-8601 string, UTC',
  serialize(value) {
    const date = value instanceof Date ? value : new Date(value as string);
    if (Number.isNaN(date.getTime())) throw new GraphQLError('DateTime cannot represent an invalid date');
    return date.toISOString();
  },
  parseValue: parse,
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING) throw new GraphQLError('DateTime must be a string');
    return parse(ast.value);
  },
});
