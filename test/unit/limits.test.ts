import { parse, type OperationDefinitionNode } from 'graphql';
import { DocumentCache, boundedBacklog, declaredVariables } from '../../src/api/limits';

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

  // With a map, the backlog is also graphql-js's map of events to results: it must keep that layer's promises.
  test('When mapping an event fails, then the results before it arrive, the reader gets the error and the source is stopped', async () => {
    const { iterable, state } = source(100);
    const backlog = boundedBacklog(iterable, 10, () => undefined, (n: number) => {
      if (n === 2) throw new Error('bad event');
      return n * 10;
    });

    expect(await backlog.next()).toEqual({ value: 0, done: false });
    expect(await backlog.next()).toEqual({ value: 10, done: false });
    await expect(backlog.next()).rejects.toThrow('bad event');
    await settle();
    expect(state.stopped).toBe(true);
    expect(state.produced).toBe(3);
  });

  test('When the reader returns while an event is being mapped, then the source is stopped and the mapped event is dropped', async () => {
    const { iterable, state } = source(100);
    let finish: (() => void) | null = null;
    const backlog = boundedBacklog(iterable, 10, () => undefined, (n: number) => new Promise<number>((resolve) => (finish = () => resolve(n))));
    const pending = backlog.next();
    await settle();

    await backlog.return?.();
    (finish as (() => void) | null)?.();

    expect(state.stopped).toBe(true);
    expect(await pending).toEqual({ value: undefined, done: true });
    expect(await backlog.next()).toEqual({ value: undefined, done: true });
  });

  test('When the reader stops reading and events are mapped asynchronously, then the bound still holds', async () => {
    const { iterable, state } = source(1_000_000);
    let overflows = 0;
    const backlog = boundedBacklog(iterable, 10, () => overflows++, async (n: number) => n);

    await backlog.next();
    await settle();

    expect(overflows).toBe(1);
    expect(state.stopped).toBe(true);
    expect(state.produced).toBeLessThan(20);
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

describe('document cache', () => {
  const doc = (n: number) => parse(`{ f${n} }`);

  test('When more texts come than it holds, then the least recently used goes and the count stays bounded', () => {
    const cache = new DocumentCache(2, 100);
    cache.set('a', doc(1));
    cache.set('b', doc(2));
    expect(cache.get('a')).toBeDefined(); // now b is the least recently used

    cache.set('c', doc(3));

    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBeDefined();
    expect(cache.get('c')).toBeDefined();
  });

  test('When a text is longer than the bound, then it is not kept', () => {
    const cache = new DocumentCache(10, 5);
    cache.set('123456', doc(1));

    expect(cache.get('123456')).toBeUndefined();
  });
});
