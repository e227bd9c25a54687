import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { RunningApp } from '../../src/app';
import { CreatePromotionDocument, IssuanceDocument, IssueCouponDocument } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { ROOT } from '../helpers/service-process';

/** The client guide's plain graphql-ws snippet runs as pasted on this Node, against the real service. */

let env: TestEnvironment;
let app: RunningApp;

beforeAll(async () => {
  env = await createTestEnvironment('client_guide');
  app = await startTestApp(env);
});

afterAll(async () => {
  await app?.stop();
  await env?.cleanup();
});

/** The guide's JavaScript code blocks, in order. */
function guideSnippets(): string[] {
  const guide = readFileSync(join(ROOT, 'docs', 'clients.md'), 'utf8');
  return [...guide.matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1] as string);
}

test('When the guide\'s graphql-ws snippet is run with node, then it prints the ISSUED confirmation and exits', async () => {
  const snippet = guideSnippets().find((code) => code.includes("from 'graphql-ws'"));
  expect(snippet).toBeDefined();
  const input = { name: 'Guide sale', totalStock: 3, endsAt: new Date(Date.now() + 3_600_000).toISOString() };
  const created = await httpGraphQL(app.url, CreatePromotionDocument, { input }, await tokenFor('admin', { admin: true }));
  const promotionId = created.body.data?.createPromotion.id as string;
  const token = await tokenFor('grace');
  const requestId = (await httpGraphQL(app.url, IssueCouponDocument, { promotionId }, token)).body.data?.issueCoupon.requestId as string;
  const code = await eventually(async () => (await httpGraphQL(app.url, IssuanceDocument, { requestId }, token)).body.data?.issuance?.coupon?.code, 20_000, 'ISSUED');

  // What the reader supplies: their token, the requestId from issueCoupon, and the server's address.
  const program = `const getToken = async () => ${JSON.stringify(token)};\nconst requestId = ${JSON.stringify(requestId)};\n${snippet}`.replace(
    'ws://localhost:4000/graphql',
    `${app.url.replace(/^http/, 'ws')}/graphql`,
  );
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', program], { cwd: ROOT, timeout: 20_000 });

  expect(JSON.parse(stdout.trim())).toEqual({ data: { couponIssued: { status: 'ISSUED', coupon: { code }, failureReason: null } } });
});
