import { getIntrospectionQuery, getOperationAST, parse, type GraphQLError } from 'graphql';
import { assertOperationComplexity, COMPLEXITY_LIMITS } from '../../src/api/complexity';

function check(query: string): string | null {
  const document = parse(query);
  try {
    assertOperationComplexity(document, getOperationAST(document) as NonNullable<ReturnType<typeof getOperationAST>>);
    return null;
  } catch (error) {
    return (error as GraphQLError).extensions.code as string;
  }
}

const nested = (depth: number) => `{ ${'a { '.repeat(depth - 1)}b${' }'.repeat(depth - 1)} }`;

describe('operation complexity', () => {
  test('When an operation is within the limits, then it passes', () => {
    expect(check(nested(COMPLEXITY_LIMITS.maxDepth))).toBeNull();
    expect(check(`{ ${Array.from({ length: COMPLEXITY_LIMITS.maxFields }, (_, i) => `f${i}: x`).join(' ')} }`)).toBeNull();
  });

  test('When it is too deep or selects too many fields, then QUERY_TOO_COMPLEX', () => {
    expect(check(nested(COMPLEXITY_LIMITS.maxDepth + 1))).toBe('QUERY_TOO_COMPLEX');
    expect(check(`{ ${Array.from({ length: COMPLEXITY_LIMITS.maxFields + 1 }, (_, i) => `f${i}: x`).join(' ')} }`)).toBe('QUERY_TOO_COMPLEX');
  });

  test('When fragments hide the size, then they are expanded and counted', () => {
    const fields = Array.from({ length: 40 }, (_, i) => `f${i}`).join(' ');
    const spreads = Array.from({ length: 10 }, (_, i) => `a${i}: x { ...F }`).join(' ');

    expect(check(`{ ${spreads} } fragment F on X { ${fields} }`)).toBe('QUERY_TOO_COMPLEX');
    expect(check(`{ a { ...F } } fragment F on X { b { ...G } } fragment G on X { c }`)).toBeNull();
  });

  test('When GraphiQL introspects the schema, then it is not limited', () => {
    expect(check(getIntrospectionQuery())).toBeNull();
  });
});

describe('operation complexity: introspection', () => {
  test('When introspection is repeated under aliases, then it counts like any field', () => {
    const aliased = Array.from({ length: 400 }, (_, i) => `a${i}: __schema { queryType { name } }`).join(' ');

    expect(check(`{ ${aliased} }`)).toBe('QUERY_TOO_COMPLEX');
  });

  test('When one operation selects issueCoupon more than once, through aliases or fragments, then QUERY_TOO_COMPLEX', () => {
    const issue = (alias = '') => `${alias}issueCoupon(promotionId: "p") { outcome }`;

    expect(check(`mutation { ${issue()} }`)).toBeNull();
    expect(check(`mutation { ${issue()} ${issue()} }`)).toBeNull(); // one response key: GraphQL runs it once
    expect(check(`mutation { ${issue('a: ')} ${issue('b: ')} }`)).toBe('QUERY_TOO_COMPLEX');
    expect(check(`mutation { ...F ... on Mutation { ${issue('other: ')} } } fragment F on Mutation { ${issue()} }`)).toBe('QUERY_TOO_COMPLEX');
    expect(check(`mutation { ${issue()} createPromotion(input: {}) { id } }`)).toBeNull();
  });
});
