import { Deadlines } from '../../src/api/ws-transport';

/**
 * The shared deadline timer of the WebSocket transport (token expiries). What it holds must follow the sockets
 * that wait, not how many came and went: a client reconnecting over and over with one token must not grow it.
 */

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('deadlines', () => {
  test('When items with the same due time are added and removed again and again, then one due time is held, not one per round', () => {
    const deadlines = new Deadlines<object>(() => undefined);
    const at = Date.now() + 3_600_000; // an hour-long token

    for (let i = 0; i < 1000; i++) {
      const item = {};
      const due = deadlines.add(item, at);
      deadlines.remove(item, due); // the socket closed before its token expired
    }

    expect(deadlines.scheduled).toBeLessThanOrEqual(1);
  });

  test('When an item is added again at a due time whose group was emptied, then it is still due once, at its time and never before', async () => {
    const fired: { item: string; at: number }[] = [];
    const deadlines = new Deadlines<string>((item) => fired.push({ item, at: Date.now() }));
    const at = Date.now() + 150;

    deadlines.remove('first', deadlines.add('first', at));
    deadlines.add('second', at);
    await wait(400);

    expect(fired.map((f) => f.item)).toEqual(['second']);
    expect(fired[0]?.at).toBeGreaterThanOrEqual(at);
  });

  test('When a deadline is further away than one setTimeout can wait, then it is met then, not before and not at once', () => {
    jest.useFakeTimers({ now: Date.UTC(2026, 0, 1) });
    try {
      const fired: string[] = [];
      const deadlines = new Deadlines<string>((item) => fired.push(item));
      const day = 24 * 3600 * 1000;
      const at = Date.now() + 40 * day; // past setTimeout's ceiling of about 24.8 days

      deadlines.add('far', at);
      deadlines.add('near', Date.now() + day);
      jest.advanceTimersByTime(day + 100);
      expect(fired).toEqual(['near']);

      jest.advanceTimersByTime(at - Date.now() - 1);
      expect(fired).toEqual(['near']);

      jest.advanceTimersByTime(101);
      expect(fired).toEqual(['near', 'far']);
    } finally {
      jest.useRealTimers();
    }
  });
});
