import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lexicographicSortSchema, printSchema } from 'graphql';
import { createSchema } from './schema';

/** The schema as the code defines it, sorted so the text only changes when the schema does. */
export async function printedSchema(): Promise<string> {
  // Building the schema calls no service: resolvers are only instantiated per operation.
  const schema = await createSchema({ promotions: null as never, issuance: null as never, audit: null as never, coupons: null as never });
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}

export const SCHEMA_FILE = join(__dirname, '..', '..', 'schema.graphql');

if (require.main === module) {
  printedSchema().then(
    (text) => writeFileSync(SCHEMA_FILE, text),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
