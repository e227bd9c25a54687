import 'reflect-metadata';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lexicographicSortSchema, printSchema } from 'graphql';
import { API_REFERENCE_FILE, withSchemaBlock } from './api-reference';
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
    (text) => {
      writeFileSync(SCHEMA_FILE, text);
      // The API reference shows the same text: kept in step here, checked by test/unit/api-reference.test.ts.
      writeFileSync(API_REFERENCE_FILE, withSchemaBlock(readFileSync(API_REFERENCE_FILE, 'utf8'), text));
    },
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
