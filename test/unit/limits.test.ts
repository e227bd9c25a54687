import { parse, type OperationDefinitionNode } from 'graphql';
import { boundedBacklog, declaredVariables } from '../../src/api/limits';

/** A source that yields `count` numbers as fast as it is read, and records whether it was stopped. */
function source(count: number) {
  const state = { produced: 0, stopped: false };
  const iterable: AsyncIterable<number> = {
    [Symbol.asyncIterator]: () => ({
      next: async () => (state.stopped || state.produced >= count ? { value: undefined, done: true } : { value: state.produced++, done: false }),
      return: async () => {
        state.stopped = true;
        return { value: undefined, done: true };
      },
    }),
  };
  return { iterable, state };
}

const settle = () => new Promise((r) => setTimeout(r, 10));

describe('bounded backlog', () => {
  test('When the reader keeps up, then every result arrives in order, then done', async () => {
    const { iterable } = source(50);
    const seen: number[] = [];

    for await (const n of boundedBacklog(iterable, 5, () => undefined)) seen.push(n);

    expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  test('When the reader stops reading, then past the bound the overflow runs once and the source is stopped', async () => {
    const { iterable, state } = source(1_000_000);
    let overflows = 0;
    const backlog = boundedBacklog(iterable, 10, () => overflows++);

    await backlog.next(); // reads one, then reads nothing more
    await settle();

    expect(overflows).toBe(1);
    expect(state.stopped).toBe(true);
    expect(state.produced).toBeLessThan(20);
    expect(await backlog.next()).toEqual({ value: undefined, done: true });
  });

  test('When the reader returns early, then the source is stopped', async () => {
    const { iterable, state } = source(1_000_000);
    const backlog = boundedBacklog(iterable, 100, () => undefined);

    await backlog.next();
    await backlog.return?.();

    expect(state.stopped).toBe(true);
    expect(await backlog.next()).toEqual({ value: undefined, done: true });
  });

  test('When the source fails, then the reader gets its error', async () => {
    const failing: AsyncIterable<number> = { [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(new Error('boom')) }) };

    await expect(boundedBacklog(failing, 10, () => undefined).next()).rejects.toThrow('boom');
  });
});

describe('declared variables', () => {
  test('When a client sends variables the operation does not declare, then only the declared ones are kept', () => {
    const operation = parse('query ($a: ID, $b: Int) { x(a: $a, b: $b) }').definitions[0] as OperationDefinitionNode;

    expect(declaredVariables(operation, { a: '1', junk: 'x'.repeat(1000), constructor: 1 })).toEqual({ a: '1' });
    expect(declaredVariables(operation, null)).toBeUndefined();
    expect(declaredVariables(operation, 'not an object')).toBeUndefined();
  });
});
