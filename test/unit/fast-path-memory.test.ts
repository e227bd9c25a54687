import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { buildSchema } from 'graphql';
import type { EdgeLimits } from '../../src/config';
import { FastPath, type FastPathOptions } from '../../src/api/fast-path';

/**
 * The fast path keeps parsed documents: what it holds must be bounded by memory, not by text alone. A parsed
 * document (its nodes, and the tokens its locations point to) takes a few hundred bytes per token, so a short
 * text of many tokens weighs a hundred times its characters.
 */

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const schema = buildSchema(readFileSync(join(__dirname, '..', '..', 'schema.graphql'), 'utf8'));
const limits = { maxQueryTokens: 2000, introspection: true } as EdgeLimits;
const options = { schema, limits, development: false } as unknown as FastPathOptions;

/** About 1,500 tokens in about 4 KB: valid, within the complexity limits. */
const dense = (i: number) => `query Q${i} { ${Array.from({ length: 140 }, (_, k) => `a${k}: promotion(id: "${i}-${k}") { id }`).join(' ')} }`;

test('When many distinct dense documents are learned, then the heap they hold stays within tens of megabytes', () => {
  const fastPath = new FastPath(options);
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 300; i++) fastPath.learn({ query: dense(i) });
  gc();
  const grown = (process.memoryUsage().heapUsed - before) / 1024 / 1024;
  expect(grown).toBeLessThan(48);
  // Still a cache: the latest documents are kept.
  expect((fastPath as unknown as { known: Map<string, unknown> }).known.size).toBeGreaterThan(10);
});
