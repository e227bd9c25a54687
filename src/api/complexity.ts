import {
  GraphQLError,
  Kind,
  type DocumentNode,
  type FragmentDefinitionNode,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';

export const COMPLEXITY_LIMITS = { maxDepth: 8, maxFields: 300 } as const;

/** Root fields that reserve something: one per operation, so a single request cannot reserve many times. */
const ONCE_PER_OPERATION = new Set(['issueCoupon']);

const tooComplex = (message: string) => new GraphQLError(message, { extensions: { code: 'QUERY_TOO_COMPLEX', http: { status: 400 } } });

/**
 * Bounds the work a single operation can ask for: selection depth and the number of fields selected,
 * fragments expanded. Introspection is exempt so GraphiQL and codegen keep working, but only as one
 * unaliased __schema and __type at the root: aliases would let it be repeated at will. And at most one
 * issueCoupon per operation, checked before anything runs, so a refused document reserves nothing.
 */
export function assertOperationComplexity(document: DocumentNode, operation: OperationDefinitionNode): void {
  // Apollo reuses the parsed document of a repeated query: an operation checked once passes for good.
  if (withinLimits.has(operation)) return;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const def of document.definitions) if (def.kind === Kind.FRAGMENT_DEFINITION) fragments.set(def.name.value, def);

  let fields = 0;
  let deepest = 0;
  // Selections with one response key are merged by GraphQL and run once: count keys, not selections.
  const reserving = new Set<string>();
  const visit = (set: SelectionSetNode, depth: number, seen: Set<string>): void => {
    deepest = Math.max(deepest, depth);
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        if (depth === 1 && !selection.alias && (name === '__schema' || name === '__type')) continue;
        if (depth === 1 && ONCE_PER_OPERATION.has(name)) reserving.add(selection.alias?.value ?? name);
        fields++;
        if (selection.selectionSet) visit(selection.selectionSet, depth + 1, seen);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        visit(selection.selectionSet, depth, seen);
      } else {
        const fragment = fragments.get(selection.name.value);
        if (fragment && !seen.has(fragment.name.value)) {
          visit(fragment.selectionSet, depth, new Set(seen).add(fragment.name.value));
        }
      }
      if (fields > COMPLEXITY_LIMITS.maxFields || deepest > COMPLEXITY_LIMITS.maxDepth) {
        throw tooComplex(`Query is too complex: at most ${COMPLEXITY_LIMITS.maxDepth} levels and ${COMPLEXITY_LIMITS.maxFields} fields`);
      }
    }
  };
  visit(operation.selectionSet, 1, new Set());
  if (reserving.size > 1) throw tooComplex('At most one issueCoupon per operation');
  withinLimits.add(operation);
}

const withinLimits = new WeakSet<OperationDefinitionNode>();
