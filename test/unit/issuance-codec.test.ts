import { newPromotionId, newRequestId } from '../../src/domain/identifiers';
import type { Issuance } from '../../src/domain/types';
import { STATUS_FIELDS, decodeIssuance, decodeMessage, encodeIssuance, statusFieldsLua } from '../../src/redis/issuance-codec';

const promotionId = newPromotionId();
const requestId = newRequestId(promotionId);
const issued: Issuance = {
  requestId,
  promotionId,
  userId: 'alice',
  status: 'ISSUED',
  requestedAt: new Date(1_795_790_432_047),
  coupon: { id: 'c0ffee00-0000-4000-8000-000000000000', code: 'ABCDEFGHJKLMNPQR', promotionId, userId: 'alice', requestId, requestedAt: new Date(1_795_790_432_047), issuedAt: new Date(1_795_790_432_999) },
  failureReason: null,
};

test('When the Lua table of status fields is made, then it names every field of STATUS_FIELDS with the same letter', () => {
  const lua = statusFieldsLua();
  expect(lua.startsWith('local STATUS = {')).toBe(true);
  const pairs = [...lua.matchAll(/(\w+) = '(\w)'/g)].map(([, name, field]) => [name, field]);
  expect(Object.fromEntries(pairs)).toEqual(STATUS_FIELDS);
});

test('When the letters are unique, then no two fields of a status hash overwrite each other', () => {
  const letters = Object.values(STATUS_FIELDS);
  expect(new Set(letters).size).toBe(letters.length);
});

test('When an issuance is sent with its publish time, then the message decodes to the same issuance and that time', () => {
  expect(decodeMessage(encodeIssuance(issued, 1_795_790_433_000))).toEqual({ issuance: issued, publishedAtMs: 1_795_790_433_000 });
  expect(decodeMessage(encodeIssuance(issued))).toEqual({ issuance: issued, publishedAtMs: null });
});

test('When a status hash holds the message fields as strings, then it decodes to the same issuance', () => {
  const message = JSON.parse(encodeIssuance(issued, 1)) as Record<string, string | number>;
  const hash = Object.fromEntries(Object.entries(message).filter(([k]) => k !== 'r' && k !== 'p').map(([k, v]) => [k, String(v)]));
  expect(decodeIssuance(hash, requestId)).toEqual(issued);
});

test('When a message is not JSON or not an issuance, then it decodes to null', () => {
  expect(decodeMessage('not json')).toBeNull();
  expect(decodeMessage(JSON.stringify({ hello: 'world' }))).toBeNull();
});
