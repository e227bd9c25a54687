import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * Typed documents for clients and the end-to-end tests, from the committed schema.graphql
 * (which `npm run codegen` first re-emits from the code).
 */
const config: CodegenConfig = {
  schema: 'schema.graphql',
  documents: ['test/graphql/*.graphql'],
  ignoreNoDocuments: false,
  generates: {
    'test/generated/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        scalars: { DateTime: 'string' },
        enumsAsTypes: true,
        useTypeImports: true,
      },
    },
  },
};

export default config;
