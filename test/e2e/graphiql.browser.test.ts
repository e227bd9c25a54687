import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import type { RunningApp } from '../../src/app';
import { CreatePromotionDocument, IssuanceDocument, IssueCouponDocument } from '../generated/graphql';
import { startTestApp } from '../helpers/app';
import { launchChromium } from '../helpers/browser';
import { httpGraphQL, tokenFor } from '../helpers/clients';
import { createTestEnvironment, eventually, type TestEnvironment } from '../helpers/environment';

/** GraphiQL as a person uses it: a real headless Chromium, with every request off the test server refused. */

const UI_TIMEOUT = 20_000;

describe('GraphiQL playground in a browser', () => {
  let env: TestEnvironment;
  let app: RunningApp;
  let browser: Browser;
  let aliceToken: string;
  let requestId: string;
  let couponCode: string;
  const contexts: BrowserContext[] = [];
  const externalRequests: string[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
    env = await createTestEnvironment('graphiql_browser');
    app = await startTestApp(env);

    const input = { name: 'Browser sale', totalStock: 5, endsAt: new Date(Date.now() + 3_600_000).toISOString() };
    const created = await httpGraphQL(app.url, CreatePromotionDocument, { input }, await tokenFor('admin', { admin: true }));
    const promotionId = created.body.data?.createPromotion.id;
    if (!promotionId) throw new Error(`createPromotion failed: ${JSON.stringify(created.body)}`);
    aliceToken = await tokenFor('alice');
    const issued = await httpGraphQL(app.url, IssueCouponDocument, { promotionId }, aliceToken);
    if (issued.body.data?.issueCoupon.outcome !== 'QUEUED') throw new Error(`issueCoupon failed: ${JSON.stringify(issued.body)}`);
    requestId = issued.body.data.issueCoupon.requestId as string;
    couponCode = await eventually(async () => {
      const { body } = await httpGraphQL(app.url, IssuanceDocument, { requestId }, aliceToken);
      return body.data?.issuance?.status === 'ISSUED' ? body.data.issuance.coupon?.code : undefined;
    }, 20_000, 'the coupon to be ISSUED');
  });

  afterAll(async () => {
    await Promise.all(contexts.map((c) => c.close()));
    await browser?.close();
    await app?.stop();
    await env?.cleanup();
  });

  /** A fresh browser profile on the playground; only the test server's origin (and blob:/data:) may be fetched. */
  async function openGraphiQL(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    contexts.push(context);
    const page = await context.newPage();
    const origin = new URL(app.url).origin;
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('blob:') || url.startsWith('data:') || new URL(url).origin === origin) return route.continue();
      externalRequests.push(url);
      return route.abort('internetdisconnected');
    });
    page.on('websocket', (ws) => {
      if (new URL(ws.url()).host !== new URL(origin).host) externalRequests.push(ws.url());
    });
    await page.goto(`${app.url}/graphql`);
    await page.getByRole('region', { name: 'Operation Editor' }).getByText('Coupon issuance playground').waitFor({ timeout: UI_TIMEOUT });
    return page;
  }

  /** Clicks into a Monaco editor and replaces its whole content, as typed from the keyboard. */
  async function replaceText(page: Page, editor: Locator, text: string): Promise<void> {
    await editor.click();
    await page.keyboard.press('Control+A');
    if (text) await page.keyboard.insertText(text);
    else await page.keyboard.press('Delete');
  }

  /** Types the operation, then the Headers editor, clicks Run; resolves with the new text of the result pane once it matches `expected`. */
  async function run(page: Page, headers: string, expected: RegExp): Promise<string> {
    const resultPane = page.getByRole('region', { name: 'Result Window' });
    // Without any whitespace: Monaco renders nbsp and wraps long lines (the requestId) at the pane's width.
    const resultText = async () => (await resultPane.innerText()).replace(/\s+/g, '');
    const before = await resultText();
    const subscription = `subscription { couponIssued(requestId: "${requestId}") { requestId status coupon { code } } }`;
    await replaceText(page, page.getByRole('region', { name: 'Operation Editor' }), subscription);
    await page.locator('.graphiql-editor-tools').getByRole('button', { name: 'Headers', exact: true }).click();
    await replaceText(page, page.getByRole('region', { name: 'Headers' }).locator('.graphiql-editor:not(.hidden)'), headers);
    // Run right away, as a quick user does: GraphiQL stores the headers only after a debounce.
    await page.getByRole('button', { name: /^Execute query/ }).click();
    let text = before;
    await eventually(async () => {
      text = await resultText();
      return text !== before && expected.test(text) ? text : undefined;
    }, UI_TIMEOUT, `a new result matching ${expected}`).catch((error: Error) => {
      throw new Error(`${error.message}; the result pane shows:\n${text}`);
    });
    return text;
  }

  it('When alice types her Authorization header and runs couponIssued, then the result pane shows her ISSUED coupon, offline', async () => {
    const page = await openGraphiQL();

    const result = await run(page, `{"Authorization": "Bearer ${aliceToken}"}`, /"status":"(ISSUED|QUEUED|FAILED)"|"errors"/);

    expect(result).toContain('"status":"ISSUED"');
    expect(result).toContain(`"requestId":"${requestId}"`);
    expect(result).toContain(`"code":"${couponCode}"`);
    expect(result).not.toContain('"errors"');
    expect(externalRequests).toEqual([]);
  });

  it('When the Authorization header is cleared right after a run, then the same subscription shows UNAUTHENTICATED', async () => {
    const page = await openGraphiQL();
    await run(page, `{"Authorization": "Bearer ${aliceToken}"}`, /"status":"ISSUED"/);

    const result = await run(page, '', /"errors"|"status"/);

    expect(result).toContain('"code":"UNAUTHENTICATED"');
    expect(result).not.toContain('"status":"ISSUED"');
    expect(externalRequests).toEqual([]);
  });
});
