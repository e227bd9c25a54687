import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { RunningApp } from '../../src/app';
import { createDb, type Db } from '../../src/db/client';
import { PrismaFailureRepository } from '../../src/db/failure-repository';
import { AddPromotionStockDocument, CreatePromotionDocument, IssueCouponDocument } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { launchChromium } from '../helpers/browser';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';
import { httpGet } from '../helpers/raw-http';

/** The sale dashboard as an operator uses it: a real headless Chromium, with every request off the test server refused. */

const UI_TIMEOUT = 20_000;
const SCREENSHOT = join(tmpdir(), 'coupon-dashboard.png');
const ADMIN_SCREENSHOT = join(tmpdir(), 'coupon-dashboard-admin.png');

let env: TestEnvironment;
let app: RunningApp;
let db: Db;
let browser: Browser;
let admin: string;
const contexts: BrowserContext[] = [];
/** Requests to any other origin, and what the browser refused or failed to run (CSP violations, script errors). */
const outside: string[] = [];
const pageProblems: string[] = [];

beforeAll(async () => {
  env = await createTestEnvironment('dashboard_browser');
  app = await startTestApp(env);
  db = createDb(env.databaseUrl, 2);
  browser = await launchChromium();
  admin = await tokenFor('admin', { admin: true });
});

afterAll(async () => {
  await Promise.all(contexts.map((c) => c.close()));
  await browser?.close();
  await app?.stop();
  await db?.$disconnect();
  await env?.cleanup();
});

async function createPromotion(name: string, totalStock: number): Promise<string> {
  const input = { name, totalStock, endsAt: new Date(Date.now() + 3_600_000).toISOString() };
  const created = await httpGraphQL(app.url, CreatePromotionDocument, { input }, admin);
  const id = created.body.data?.createPromotion.id;
  if (!id) throw new Error(`createPromotion failed: ${JSON.stringify(created.body)}`);
  return id;
}

async function issue(promotionId: string, user: string): Promise<string> {
  const { body } = await httpGraphQL(app.url, IssueCouponDocument, { promotionId }, await tokenFor(user));
  const outcome = body.data?.issueCoupon.outcome;
  if (!outcome) throw new Error(`issueCoupon failed: ${JSON.stringify(body)}`);
  return outcome;
}

async function openDashboard(): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  contexts.push(context);
  const page = await context.newPage();
  const origin = new URL(app.url).origin;
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('data:') || new URL(url).origin === origin) return route.continue();
    outside.push(url);
    return route.abort('internetdisconnected');
  });
  page.on('websocket', (ws) => {
    if (new URL(ws.url()).host !== new URL(origin).host) outside.push(ws.url());
  });
  page.on('console', (message) => {
    // A server that is down (the restart test) shows as failed loads and sockets; anything else is a problem.
    if (message.type() === 'error' && !/^Failed to load resource|^WebSocket connection to/.test(message.text())) pageProblems.push(message.text());
  });
  page.on('pageerror', (error) => pageProblems.push(error.message));
  await page.goto(`${app.url}/dashboard`);
  return page;
}

const card = (page: Page, promotionId: string) => page.locator(`section.card[data-promotion-id="${promotionId}"]`);

/** Polls the page until `read` gives a value `accept` takes; fails with the last value read. */
async function until<T>(read: () => Promise<T>, accept: (value: T) => boolean, what: string): Promise<T> {
  let last: T | undefined;
  return eventually(async () => {
    last = await read();
    return accept(last) ? last : undefined;
  }, UI_TIMEOUT, what).catch((error: Error) => {
    throw new Error(`${error.message}; last read: ${JSON.stringify(last)}`);
  });
}

const attribute = (page: Page, promotionId: string, selector: string, name: string) => () =>
  card(page, promotionId).locator(selector).getAttribute(name);

test('When /dashboard is fetched, then it and its assets come from the app, under a policy that allows nothing else', async () => {
  const response = await fetch(`${app.url}/dashboard`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
  expect(response.headers.get('cache-control')).toBe('no-cache');
  expect(response.headers.get('x-content-type-options')).toBe('nosniff');
  const host = new URL(app.url).host;
  expect(response.headers.get('content-security-policy')).toBe(
    `default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws://${host} wss://${host}; ` +
      "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  );
  const html = await response.text();
  expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=/i); // nothing inline the policy would refuse
  const links = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
  expect(links.filter((link) => !link.startsWith('/dashboard/') && link !== 'data:,')).toEqual([]);

  const types: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
  for (const link of links.filter((l) => l.startsWith('/dashboard/'))) {
    const asset = await fetch(`${app.url}${link}`);
    expect([link, asset.status, asset.headers.get('content-type')]).toEqual([link, 200, types[link.split('.').pop() as string]]);
    expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    const again = await fetch(`${app.url}${link}`, { headers: { 'if-none-match': asset.headers.get('etag') as string } });
    expect(again.status).toBe(304);
  }
  expect(links.some((l) => /^\/dashboard\/graphql-ws\.[\w-]{10}\.js$/.test(l))).toBe(true);
  expect((await fetch(`${app.url}/dashboard/graphql-ws.js`)).status).toBe(404); // only the hashed names are served
  expect((await fetch(`${app.url}/dashboard`, { method: 'POST' })).status).toBe(405);
  // gzip only where the client takes it: q=0 refuses it (RFC 9110), and the page then comes as it is.
  for (const acceptEncoding of ['gzip;q=0', 'identity', 'br, gzip;q=0.0', '*, gzip;q=0']) {
    const plain = await httpGet(`${app.url}/dashboard`, { 'accept-encoding': acceptEncoding });
    expect([acceptEncoding, plain.headers['content-encoding']]).toEqual([acceptEncoding, undefined]);
    expect(plain.body).toBe(html);
  }
  const zipped = await httpGet(`${app.url}/dashboard`, { 'accept-encoding': 'br;q=1, gzip;q=0.5' });
  expect(zipped.headers['content-encoding']).toBe('gzip');

  const consumer = await startTestApp(env, { ROLE: 'consumer' });
  try {
    expect((await fetch(`${consumer.url}/dashboard`)).status).toBe(404);
  } finally {
    await consumer.stop();
  }
});

test('When coupons are issued while the dashboard is open, then its remaining stock and both charts follow, with nothing fetched from outside', async () => {
  const promotionId = await createPromotion('Noon flash sale', 50);
  const page = await openDashboard();
  await until(attribute(page, promotionId, '.remaining', 'data-remaining'), (v) => v === '50', 'the remaining stock 50');
  const pointsBefore = Number(await until(attribute(page, promotionId, '.stock-chart', 'data-points'), (v) => Number(v) >= 2, 'two points on the chart'));
  expect(await card(page, promotionId).locator('.status').textContent()).toBe('ACTIVE');

  for (let i = 0; i < 12; i++) expect(await issue(promotionId, `buyer-${i}`)).toBe('QUEUED');

  await until(attribute(page, promotionId, '.remaining', 'data-remaining'), (v) => v === '38', 'the remaining stock 38');
  await until(attribute(page, promotionId, '.stock-chart', 'data-last'), (v) => v === '38', 'the chart ending at 38');
  expect(Number(await attribute(page, promotionId, '.stock-chart', 'data-points')())).toBeGreaterThan(pointsBefore);
  // The twelve units were taken within about a second: the rate chart saw units going.
  await until(attribute(page, promotionId, '.rate-chart', 'data-max'), (v) => Number(v) > 0, 'an issue rate above 0');
  const line = await card(page, promotionId).locator('.stock-chart polyline').getAttribute('points');
  expect(line?.split(' ').length).toBeGreaterThanOrEqual(2);
  expect(await page.locator('#connection').getAttribute('data-state')).toBe('live');
  await page.locator('#promotion-list tbody tr').first().waitFor({ timeout: UI_TIMEOUT });

  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  expect(statSync(SCREENSHOT).size).toBeGreaterThan(10_000);
  expect(outside).toEqual([]);
  expect(pageProblems).toEqual([]);
});

test('When an admin token is typed in, then the audit terms, the backlog and the dead letters appear; a wrong token shows its refusal', async () => {
  const promotionId = await createPromotion('Audited sale', 20);
  for (let i = 0; i < 3; i++) expect(await issue(promotionId, `audited-${i}`)).toBe('QUEUED');
  const deadId = `${promotionId}.${'d'.repeat(32)}`;
  await new PrismaFailureRepository(db).record({ requestId: deadId, promotionId, userId: 'mallory', position: 9, reason: 'refused by the database', deliveries: 5, requestedAt: new Date() });
  const page = await openDashboard();
  await until(attribute(page, promotionId, '.remaining', 'data-remaining'), (v) => v === '17', 'the remaining stock 17');
  await expect(card(page, promotionId).locator('.admin').isHidden()).resolves.toBe(true);

  await page.locator('#admin-token').fill(admin);
  await page.locator('#admin-form button[type="submit"]').click();

  const term = (name: string) => card(page, promotionId).locator(`.audit dd[data-term="${name}"]`).textContent();
  await until(() => term('persisted'), (v) => v === '3', 'the audit term persisted 3 (the consumer stored the three)');
  expect(await term('holds')).toBe('true');
  expect(await term('totalStock')).toBe('20');
  expect(await term('remainingStock')).toBe('17');
  expect(await term('inFlight')).toBe('0');
  expect(await term('failed')).toBe('0'); // counted in Redis by the consumer; this dead letter was written to PostgreSQL only
  expect(await attribute(page, promotionId, '.backlog', 'data-backlog')()).toBe('0');
  const row = card(page, promotionId).locator(`.dead-letters tr[data-request-id="${deadId}"]`);
  await row.waitFor({ timeout: UI_TIMEOUT });
  expect(await row.textContent()).toContain('refused by the database');
  expect(await row.textContent()).toContain('mallory');
  // The token went nowhere but into the request headers: not the field, the address or storage.
  expect(await page.locator('#admin-token').inputValue()).toBe('');
  expect(page.url()).not.toContain(admin);
  expect(await page.evaluate('JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie')).toBe('{}{}');
  await page.screenshot({ path: ADMIN_SCREENSHOT, fullPage: true });
  expect(statSync(ADMIN_SCREENSHOT).size).toBeGreaterThan(10_000);

  await page.locator('#admin-token').fill('not-a-token');
  await page.locator('#admin-form button[type="submit"]').click();
  await until(() => page.locator('#admin-error').textContent(), (v) => /UNAUTHENTICATED/.test(v ?? ''), 'the UNAUTHENTICATED refusal');
  expect(await card(page, promotionId).locator('.admin').isHidden()).toBe(true);

  await page.locator('#admin-token').fill(await tokenFor('alice'));
  await page.locator('#admin-form button[type="submit"]').click();
  await until(() => page.locator('#admin-error').textContent(), (v) => /FORBIDDEN/.test(v ?? ''), 'the FORBIDDEN refusal');
  expect(outside).toEqual([]);
  expect(pageProblems).toEqual([]);
});

test('When a watched sale sells out and stock is added, then the dashboard watches it again and shows it reopened', async () => {
  const promotionId = await createPromotion('Small sale', 2);
  const page = await openDashboard();
  await until(attribute(page, promotionId, '.remaining', 'data-remaining'), (v) => v === '2', 'the remaining stock 2');

  expect(await issue(promotionId, 'first')).toBe('QUEUED');
  expect(await issue(promotionId, 'second')).toBe('QUEUED');
  await until(() => card(page, promotionId).getAttribute('data-status'), (v) => v === 'SOLD_OUT', 'the sale SOLD_OUT');
  expect(await attribute(page, promotionId, '.remaining', 'data-remaining')()).toBe('0');

  const added = await httpGraphQL(app.url, AddPromotionStockDocument, { promotionId, amount: 3 }, admin);
  expect(added.body.errors).toBeUndefined();
  await until(() => card(page, promotionId).getAttribute('data-status'), (v) => v === 'ACTIVE', 'the sale ACTIVE again');
  expect(await attribute(page, promotionId, '.remaining', 'data-remaining')()).toBe('3');
  expect(await issue(promotionId, 'third')).toBe('QUEUED');
  await until(attribute(page, promotionId, '.remaining', 'data-remaining'), (v) => v === '2', 'the reopened sale live: 2 left');
  expect(outside).toEqual([]);
  expect(pageProblems).toEqual([]);
});

test('When the server restarts, then the page reconnects with backoff, watches again and follows the stock', async () => {
  const promotionId = await createPromotion('Restarted sale', 10);
  const page = await openDashboard();
  await until(attribute(page, promotionId, '.remaining', 'data-remaining'), (v) => v === '10', 'the remaining stock 10');
  const port = app.port;

  await app.stop();
  await until(() => page.locator('#connection').getAttribute('data-state'), (v) => v === 'reconnecting', 'the page reconnecting');
  app = await startTestApp(env, { PORT: String(port) });
  await until(() => page.locator('#connection').getAttribute('data-state'), (v) => v === 'live', 'the page live again');
  expect(await issue(promotionId, 'after-restart')).toBe('QUEUED');

  await until(attribute(page, promotionId, '.remaining', 'data-remaining'), (v) => v === '9', 'the remaining stock 9');
  expect(outside).toEqual([]);
  expect(pageProblems).toEqual([]);
});

test('When there are more promotions than a page, then the list shows 20 and More brings the rest, each once', async () => {
  const startsAt = new Date(Date.now() + 3_600_000).toISOString();
  const endsAt = new Date(Date.now() + 7_200_000).toISOString();
  for (let i = 0; i < 21; i++) {
    const created = await httpGraphQL(app.url, CreatePromotionDocument, { input: { name: `Later sale ${i}`, totalStock: 5, startsAt, endsAt } }, admin);
    expect(created.body.errors).toBeUndefined();
  }
  const { body } = await httpGraphQL(app.url, 'query { promotions(first: 100) { id } }');
  const all = (body.data as { promotions: { id: string }[] }).promotions.map((p) => p.id);
  expect(all.length).toBeGreaterThan(21);
  expect(all.length).toBeLessThanOrEqual(40);
  const page = await openDashboard();
  const rows = page.locator('#promotion-list tbody tr');
  await until(() => rows.count(), (n) => n === 20, 'a first page of 20');
  await page.locator('#more').click();
  await until(() => rows.count(), (n) => n === all.length, `all ${all.length} promotions`);

  const shown = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-promotion-id')));
  expect(shown).toEqual(all); // newest first, none twice, none skipped
  expect(await page.locator('#more').isHidden()).toBe(true);
  expect(outside).toEqual([]);
  expect(pageProblems).toEqual([]);
});
