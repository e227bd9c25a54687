import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { buildWebExample, serveWebExample } from '../../clients/web/build';
import type { RunningApp } from '../../src/app';
import { CreatePromotionDocument } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { launchChromium } from '../helpers/browser';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, type TestEnvironment } from '../helpers/environment';

/**
 * The kit's browser example (clients/web, Apollo Client + GraphQLWsLink, bundled by esbuild) in a real
 * headless Chromium, served from its own origin as a shop's site would be: the API allows that origin
 * (CORS_ORIGINS), and every request to any other server is refused and recorded.
 */

const UI_TIMEOUT = 20_000;

let env: TestEnvironment;
let app: RunningApp;
let site: Server;
let siteOrigin: string;
let outdir: string;
let browser: Browser;
let promotionId: string;
const outside: string[] = [];

beforeAll(async () => {
  browser = await launchChromium();
  outdir = mkdtempSync(join(tmpdir(), 'web-client-'));
  await buildWebExample(outdir);
  site = await serveWebExample(outdir, 0);
  siteOrigin = `http://127.0.0.1:${(site.address() as { port: number }).port}`;
  env = await createTestEnvironment('web_client');
  app = await startTestApp(env, { CORS_ORIGINS: siteOrigin });

  const input = { name: 'Web example sale', totalStock: 3, endsAt: new Date(Date.now() + 3_600_000).toISOString() };
  const created = await httpGraphQL(app.url, CreatePromotionDocument, { input }, await tokenFor('admin', { admin: true }));
  promotionId = created.body.data?.createPromotion.id as string;
  if (!promotionId) throw new Error(`createPromotion failed: ${JSON.stringify(created.body)}`);
});

afterAll(async () => {
  await browser?.close();
  await app?.stop();
  await new Promise((resolve) => site?.close(resolve));
  await env?.cleanup();
  if (outdir) rmSync(outdir, { recursive: true, force: true });
});

/** A fresh profile on the example page; only the page's origin and the API's may be reached. */
async function openExample(query: Record<string, string>): Promise<{ page: Page; frames: string[]; posts: { body: string; headers: Record<string, string> }[] }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const allowed = new Set([siteOrigin, new URL(app.url).origin]);
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (allowed.has(new URL(url).origin)) return route.continue();
    outside.push(url);
    return route.abort('internetdisconnected');
  });
  const frames: string[] = [];
  const posts: { body: string; headers: Record<string, string> }[] = [];
  page.on('request', (request) => {
    if (request.method() === 'POST') posts.push({ body: request.postData() ?? '', headers: request.headers() });
  });
  page.on('websocket', (ws) => {
    if (new URL(ws.url()).host !== new URL(app.url).host) outside.push(ws.url());
    ws.on('framereceived', ({ payload }) => frames.push(String(payload)));
  });
  await page.goto(`${siteOrigin}/?${new URLSearchParams(query).toString()}`);
  return { page, frames, posts };
}

test('When alice asks for a coupon on the example page, then it shows QUEUED, then ISSUED with its code from the WebSocket, with nothing fetched from outside', async () => {
  const token = await tokenFor('alice');
  const { page, frames, posts } = await openExample({ api: `${app.url}/graphql`, token, promotion: promotionId });

  await page.getByRole('button', { name: 'Get coupon' }).click();
  await page.locator('#status[data-status="ISSUED"]').waitFor({ timeout: UI_TIMEOUT });

  const log = await page.getByRole('list', { name: 'What happened' }).locator('li').evaluateAll((items) => items.map((li) => li.getAttribute('data-status')));
  expect(log).toEqual(['QUEUED', 'ISSUED']);
  const code = await page.locator('#code').innerText();
  expect(code).toMatch(/^[A-Z0-9]{16}$/);
  // The mutation went over HTTP, as Apollo Client names itself (headers CORS must let through); the confirmation over the socket.
  expect(posts).toEqual([{ body: expect.stringContaining('issueCoupon'), headers: expect.objectContaining({ 'apollographql-client-name': 'coupon-web-example' }) }]);
  expect(frames.some((frame) => frame.includes('"couponIssued"') && frame.includes('"ISSUED"') && frame.includes(code))).toBe(true);
  expect(outside).toEqual([]);
  await page.context().close();
});

test('When the token is not accepted, then the page shows UNAUTHENTICATED and reserves nothing', async () => {
  const remaining = async () => (await httpGraphQL(app.url, `query ($id: ID!) { promotion(id: $id) { remainingStock } }`, { id: promotionId })).body.data;
  const before = await remaining();
  const { page } = await openExample({ api: `${app.url}/graphql`, token: 'not-a-token', promotion: promotionId });

  await page.getByRole('button', { name: 'Get coupon' }).click();
  await page.locator('#status[data-status="ERROR"]').waitFor({ timeout: UI_TIMEOUT });

  expect(await page.getByRole('list', { name: 'What happened' }).innerText()).toContain('UNAUTHENTICATED');
  expect(await remaining()).toEqual(before);
  expect(outside).toEqual([]);
  await page.context().close();
});
