// Drives the demo page's live monitoring view in headless Chromium for cli/tests/monitor_page.rs
// (playwright-core, the Debian chromium binary). Usage: node monitor.mjs CONFIG.json; CONFIG names
// the page's URL, the host's URL, an address where nothing listens, and where to write results and
// the screenshot. Everything the test asserts comes back in the results file; this script only
// drives and reads.

import { launch, watch } from './browser.mjs';
import { readFileSync, writeFileSync } from 'node:fs';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const allowed = [new URL(config.url).origin, new URL(config.host).origin, new URL(config.unreachable).origin];
const out = { consoleErrors: [], external: [], steps: [] };
const step = (name) => out.steps.push(name);
// Console errors come with the step they came after (browser.mjs `watch`): Chromium logs the
// refused connection as one.

const browser = await launch(config.chromium);
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  watch(page, out, allowed);
  const rows = () => page.$$eval('#monitor-table tbody tr', (trs) => trs.map((tr) => ({
    feature: tr.dataset.feature,
    name: tr.cells[0].textContent,
    psi: tr.cells[1].textContent,
    state: tr.cells[2].textContent,
    alarmedClass: tr.classList.contains('mon-alarmed'),
    bars: tr.cells[3].querySelectorAll('rect').length,
    titles: [...tr.cells[3].querySelectorAll('title')].map((t) => t.textContent),
  })));

  await page.goto(config.url);
  await page.waitForFunction(() => window.tollgate?.ready || window.tollgate?.errors.length > 0, null, { timeout: 60_000 });
  out.startErrors = await page.evaluate(() => window.tollgate.errors);
  step('loaded');

  // 1. A host where nothing listens: said in plain words, in the alert.
  await page.uncheck('#monitor-auto');
  await page.fill('#monitor-host', config.unreachable);
  await page.click('#monitor-load');
  await page.waitForFunction(() => !window.tollgateMonitoring.loading &&
    document.getElementById('monitor-error').textContent !== '', null, { timeout: 15_000 });
  out.unreachable = {
    error: await page.textContent('#monitor-error'),
    role: await page.getAttribute('#monitor-error', 'role'),
    tableHidden: await page.$eval('#monitor-table', (t) => t.hidden),
  };
  step('unreachable');

  // 2. The real host, submitted from the keyboard.
  await page.fill('#monitor-host', config.host);
  await page.focus('#monitor-host');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => !window.tollgateMonitoring.loading && window.tollgateMonitoring.report !== null &&
    document.querySelectorAll('#monitor-table tbody tr').length > 0, null, { timeout: 15_000 });
  out.error = await page.textContent('#monitor-error');
  out.snapshot = await page.textContent('#monitor-snapshot');
  out.samples = await page.textContent('#monitor-samples');
  out.alarms = await page.textContent('#monitor-alarms');
  out.fields = await page.$$eval('#monitor-fields li', (lis) => lis.map((li) => li.textContent));
  out.rows = await rows();
  out.headers = await page.$$eval('#monitor-table thead th', (ths) => ths.map((th) => th.textContent));
  step('report');

  // 3. Auto-refresh on: one load at once, then another by the timer, without a click.
  const before = await page.evaluate(() => window.tollgateMonitoring.loads);
  await page.check('#monitor-auto');
  const t0 = Date.now();
  await page.waitForFunction((before) => window.tollgateMonitoring.loads >= before + 2 &&
    !window.tollgateMonitoring.loading, before, { timeout: 15_000 });
  out.refreshedAfterMs = Date.now() - t0;
  out.rowsAfterRefresh = await rows();
  out.errorAfterRefresh = await page.textContent('#monitor-error');
  step('refresh');

  // 4. The screenshot of the view.
  await page.uncheck('#monitor-auto');
  await page.locator('#monitoring').scrollIntoViewIfNeeded();
  await page.locator('#monitoring').screenshot({ path: config.screenshot });
  step('screenshot');
} catch (e) {
  out.failure = String(e.stack ?? e);
} finally {
  await browser.close();
  writeFileSync(config.out, JSON.stringify(out));
}
