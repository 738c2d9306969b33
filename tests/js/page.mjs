// Drives the demo page in headless Chromium for tests/tests/page.rs (playwright-core, no browser
// download: the Debian chromium binary). Usage: node page.mjs CONFIG.json; CONFIG names the page's
// URL, the browser, where to write results and the screenshot, and the files of the checks.
// Everything the test asserts comes back in the results file; this script only drives and reads.

import { launch } from './browser.mjs';
import { readFileSync, writeFileSync } from 'node:fs';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const origin = new URL(config.url).origin;
const out = { consoleErrors: [], external: [], steps: [] };
const step = (name) => out.steps.push(name);

const browser = await launch(config.chromium);
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (m) => {
    if (m.type() === 'error') out.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => out.consoleErrors.push(`uncaught: ${e.message}`));
  page.on('requestfailed', (r) => out.consoleErrors.push(`request failed: ${r.url()}`));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith('data:') && !u.startsWith('blob:')) out.external.push(u);
  });

  // 1. Load: the page scores its first transaction by itself.
  await page.goto(config.url);
  await page.waitForFunction(() => window.tollgate?.ready || window.tollgate?.errors.length > 0, null, { timeout: 60_000 });
  out.startErrors = await page.evaluate(() => window.tollgate.errors);
  out.firstScoreMs = await page.evaluate(() => window.tollgate.firstScoreMs);
  out.status = await page.textContent('#status');
  out.firstDecision = await page.textContent('#decision-out');
  out.contributionBars = await page.locator('#contrib-chart svg rect').count();
  step('loaded');

  // 2. The form from the keyboard: an amount above the cap is declined by the hard rule.
  await page.focus('#amount');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('2000');
  await page.keyboard.press('Enter');
  out.capRules = await page.textContent('#rules-out');
  out.capDecision = await page.textContent('#decision-out');
  await page.focus('#amount');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('-5');
  await page.keyboard.press('Enter');
  out.badAmountError = await page.textContent('#form-error');
  step('form');

  // 3. The parity corpus, scored in the page by the page's bindings.
  out.parity = await page.evaluate(async (p) => {
    const key = await (await fetch(p.key)).text();
    const snapshot = new Uint8Array(await (await fetch(p.snapshot)).arrayBuffer());
    const requests = await (await fetch(p.requests)).json();
    const edge = new window.tollgate.Edge(key);
    edge.loadSnapshot(snapshot);
    const t0 = performance.now();
    const responses = requests.map((r) => edge.score(r));
    const ms = performance.now() - t0;
    const batch = edge.scoreBatch(`[${requests.slice(0, p.batch).join(',')}]`);
    edge.free();
    return { responses, batch, ms };
  }, config.parity);
  step('parity');

  // 4. Replay the day, then move the review threshold from the keyboard.
  await page.selectOption('#speed', '400');
  await page.click('#replay-btn');
  await page.waitForFunction(() => window.tollgate.replay?.done, null, { timeout: 120_000 });
  out.replay = await page.evaluate(() => {
    const rp = window.tollgate.replay;
    const sorted = [...rp.latencies].sort((a, b) => a - b);
    return {
      n: rp.n, scored: rp.scored, errors: rp.errors, ms: rp.ms,
      scores: Array.from(rp.scores, (s) => (Number.isNaN(s) ? null : s)),
      medianUs: sorted[Math.floor(sorted.length / 2)],
      metrics: window.tollgate.metrics,
    };
  });
  await page.focus('#review-th');
  for (let i = 0; i < 20; i++) await page.keyboard.press('ArrowRight');
  out.afterSlider = await page.evaluate(() => ({
    value: Number(document.getElementById('review-th').value),
    shown: document.getElementById('review-th-out').textContent,
    metrics: window.tollgate.metrics,
    tp: document.getElementById('c-tp').textContent,
  }));
  step('replay');

  // 5. The user's own snapshot: a damaged one dropped on the zone, then a good one with its key.
  const waitStatus = () => page.waitForFunction(() => {
    const t = document.getElementById('drop-status').textContent;
    return t && t !== 'Checking…';
  }, null, { timeout: 10_000 });
  const damaged = readFileSync(config.damagedSnapshot);
  const dataTransfer = await page.evaluateHandle((bytes) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], 'damaged.tgs'));
    return dt;
  }, [...damaged]);
  await page.dispatchEvent('#drop', 'drop', { dataTransfer });
  await waitStatus();
  out.damagedStatus = await page.textContent('#drop-status');
  out.afterDamaged = await page.textContent('#status');
  await page.setInputFiles('#snapshot-file', [config.userSnapshot, config.userKey]);
  await page.waitForFunction(() => document.getElementById('drop-status').textContent.startsWith('Loaded') ||
    document.getElementById('drop-status').textContent.startsWith('Refused'), null, { timeout: 10_000 });
  out.userStatus = await page.textContent('#drop-status');
  await page.click('#demo-btn');
  out.backStatus = await page.textContent('#drop-status');
  step('drop');

  // 6. The screenshot, of the whole page after the replay.
  await page.focus('#replay-btn');
  await page.screenshot({ path: config.screenshot, fullPage: true });
  step('screenshot');
} catch (e) {
  out.failure = String(e.stack ?? e);
} finally {
  await browser.close();
  writeFileSync(config.out, JSON.stringify(out));
}
