import { join } from 'node:path';

/** The API reference, whose schema block `npm run schema` rewrites beside schema.graphql. */
export const API_REFERENCE_FILE = join(__dirname, '..', '..', 'docs', 'API.md');

/** The schema block of docs/API.md lies between these two lines, fenced as graphql. */
export const SCHEMA_BLOCK_BEGIN = '<!-- schema.graphql: begin (written by `npm run schema`; do not edit by hand) -->';
export const SCHEMA_BLOCK_END = '<!-- schema.graphql: end -->';

/** The schema text of the reference's block, or null when the markers are missing. */
export function schemaBlock(markdown: string): string | null {
  const begin = markdown.indexOf(SCHEMA_BLOCK_BEGIN);
  const end = markdown.indexOf(SCHEMA_BLOCK_END);
  if (begin < 0 || end < begin) return null;
  const fenced = markdown.slice(begin + SCHEMA_BLOCK_BEGIN.length, end);
  const match = /^\n```graphql\n([\s\S]*)```\n$/.exec(fenced);
  return match ? (match[1] as string) : null;
}

/** The reference with its schema block replaced by `schema` (the text of schema.graphql). */
export function withSchemaBlock(markdown: string, schema: string): string {
  const begin = markdown.indexOf(SCHEMA_BLOCK_BEGIN);
  const end = markdown.indexOf(SCHEMA_BLOCK_END);
  if (begin < 0 || end < begin) throw new Error(`docs/API.md lacks the schema block markers (${SCHEMA_BLOCK_BEGIN} ... ${SCHEMA_BLOCK_END})`);
  return `${markdown.slice(0, begin + SCHEMA_BLOCK_BEGIN.length)}\n\`\`\`graphql\n${schema}\`\`\`\n${markdown.slice(end)}`;
}
