import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * Typed documents from the committed schema.graphql (which `npm run codegen` first re-emits from the code):
 * one set for client apps (clients/operations → clients/generated), one for the end-to-end tests.
 * Each output names its own documents, so the two sets never mix.
 */
const typedDocuments = {
  preset: 'client',
  presetConfig: { fragmentMasking: false },
  config: {
    scalars: { DateTime: 'string' },
    enumsAsTypes: true,
    useTypeImports: true,
  },
} as const;

const config: CodegenConfig = {
  schema: 'schema.graphql',
  ignoreNoDocuments: false,
  generates: {
    'clients/generated/': { ...typedDocuments, documents: ['clients/operations/*.graphql'] },
    'test/generated/': { ...typedDocuments, documents: ['test/graphql/*.graphql'] },
  },
};

export default config;
