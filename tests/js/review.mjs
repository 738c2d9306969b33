// Drives the demo page's review queue in headless Chromium for cli/tests/review_page.rs
// (playwright-core, the Debian chromium binary). Usage: node review.mjs CONFIG.json; CONFIG names
// the page's URL, the host's URL and token, the rows to judge, and where to write results and the
// screenshot. Everything the test asserts comes back in the results file; this script only drives
// and reads.

import { launch, watch } from './browser.mjs';
import { readFileSync, writeFileSync } from 'node:fs';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const origin = new URL(config.url).origin;
const hostOrigin = new URL(config.host).origin;
const out = { consoleErrors: [], external: [], steps: [] };
const step = (name) => out.steps.push(name);
// Console errors come with the step they came after (browser.mjs `watch`): Chromium logs every
// non-2xx answer as one, so the wrong token's 401 shows up there, and only it may.

const browser = await launch(config.chromium);
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  watch(page, out, [origin, hostOrigin]);
  const rows = () => page.$$eval('#review-table tbody tr', (trs) => trs.map((tr) => ({
    id: tr.dataset.transactionId,
    cells: [...tr.cells].map((c) => c.textContent),
  })));
  const errorShown = () => page.waitForFunction(() => !window.tollgateReviews.loading &&
    document.getElementById('review-error').textContent !== '', null, { timeout: 15_000 });

  await page.goto(config.url);
  await page.waitForFunction(() => window.tollgate?.ready || window.tollgate?.errors.length > 0, null, { timeout: 60_000 });
  out.startErrors = await page.evaluate(() => window.tollgate.errors);
  step('loaded');

  // 1. A wrong token: refused in plain words, no rows.
  await page.fill('#review-host', config.host);
  await page.fill('#review-token', 'not-the-token');
  await page.click('#review-load');
  await errorShown();
  out.wrongToken = { error: await page.textContent('#review-error'), rows: (await rows()).length };
  step('wrong token');

  // 2. The right token, typed and submitted from the keyboard: the queue.
  await page.fill('#review-limit', String(config.limit));
  await page.focus('#review-token');
  await page.keyboard.press('Control+A');
  await page.keyboard.type(config.token);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => !window.tollgateReviews.loading &&
    (document.querySelectorAll('#review-table tbody tr').length > 0 ||
      document.getElementById('review-error').textContent !== ''), null, { timeout: 15_000 });
  out.error = await page.textContent('#review-error');
  out.count = await page.textContent('#review-count');
  out.rows = await rows();
  out.headers = await page.$$eval('#review-table thead th', (ths) => ths.map((th) => th.textContent));
  out.url = page.url();
  out.sessionToken = await page.evaluate(() => sessionStorage.getItem('tollgate.analystToken'));
  out.localStorage = await page.evaluate(() => JSON.stringify(localStorage));
  step('queue');

  // 3. Verdicts: "Fraud" clicked on one row, "Genuine" pressed from the keyboard on another.
  const published = (id) => page.waitForFunction((id) => {
    const tr = document.querySelector(`#review-table tr[data-transaction-id="${id}"]`);
    const note = tr?.querySelector('.rv-note').textContent ?? '';
    return note.includes('published');
  }, id, { timeout: 20_000 });
  const verdicts = [];
  for (const { id, fraud } of config.verdicts) {
    const button = page.locator(`#review-table tr[data-transaction-id="${id}"] button[data-fraud="${fraud}"]`);
    if (fraud) {
      await button.click();
    } else {
      await button.focus();
      await page.keyboard.press('Enter');
    }
    await published(id);
    verdicts.push(await page.$eval(`#review-table tr[data-transaction-id="${id}"]`, (tr) => ({
      state: tr.querySelector('.rv-state').textContent,
      note: tr.querySelector('.rv-note').textContent.trim(),
      label: tr.querySelector('button[data-fraud]').getAttribute('aria-label'),
    })));
  }
  out.verdicts = verdicts;
  out.errorAfterVerdicts = await page.textContent('#review-error');
  out.countAfterVerdicts = await page.textContent('#review-count');
  step('verdicts');

  // 4. The screenshot, of the review queue with the verdicts just published.
  await page.locator('#reviews').scrollIntoViewIfNeeded();
  await page.locator('#reviews').screenshot({ path: config.screenshot });
  step('screenshot');

  // 5. Reloaded: the host marks the judged rows.
  await page.click('#review-load');
  await page.waitForFunction(() => !window.tollgateReviews.loading, null, { timeout: 15_000 });
  out.reloaded = await rows();
  step('reload');
} catch (e) {
  out.failure = String(e.stack ?? e);
} finally {
  await browser.close();
  writeFileSync(config.out, JSON.stringify(out));
}
