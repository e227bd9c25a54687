/**
 * The attacker of `npm run bench:attack`, in its own process so that its load generator does not take the
 * event loop of the victim's: `node -r @swc-node/register bench/attacker.ts URL KIND SECONDS CONNECTIONS`.
 * Every request differs (a comment with a counter), so the service's parsed-document cache never helps.
 * Prints its LoadResult as one JSON line.
 */
import { runLoad } from './load';

export const ATTACK_KINDS = {
  /** ~830 KB: the size that took 640 ms to parse and validate before the body limit. */
  huge: 22_000,
  /** ~60 KB, within the body limit, ~20,000 tokens: stopped by the token limit. */
  tokens: 1_600,
} as const;

/** The body of the n-th attack request of a kind: each one different, so no parsed-document cache helps. */
export function attackBody(kind: keyof typeof ATTACK_KINDS, n: number, rest = restOf(kind)): string {
  return `{"query":"# ${n}\\n${rest}`;
}

const restOf = (kind: keyof typeof ATTACK_KINDS) => `{ ${aliased(ATTACK_KINDS[kind])} }"}`;

const aliased = (n: number) => Array.from({ length: n }, (_, i) => `a${i}: promotion(id: \\"x\\") { id name }`).join(' ');

async function main(): Promise<void> {
  const [url, kind, seconds, connections] = process.argv.slice(2) as [string, keyof typeof ATTACK_KINDS, string, string];
  const rest = restOf(kind);
  const result = await runLoad({
    title: `attacker ${kind}`,
    url,
    durationSeconds: Number(seconds),
    connections: Number(connections),
    pipelining: 1,
    request: (n) => ({ body: attackBody(kind, n, rest) }),
  });
  process.stdout.write(`${JSON.stringify({ ...result, outcomes: Object.fromEntries(result.outcomes) })}\n`);
}

if (require.main === module) void main();
