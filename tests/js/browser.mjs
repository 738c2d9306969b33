// What the browser scripts (page.mjs, review.mjs, monitor.mjs) share: Debian's chromium started
// headless as this machine needs it, and, for the scripts that talk to a host, watching a page for
// console errors and for requests to origins it should not call.

import { chromium } from 'playwright-core';

// Without the background-networking flags Chromium keeps trying the closed network.
const ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];

/** Starts the chromium at `executablePath` headless. */
export function launch(executablePath) {
  return chromium.launch({ executablePath, args: ARGS });
}

/**
 * Records on `out` every console error and uncaught exception, with the step (`out.steps`) it
 * came after, in `out.consoleErrors`, and every request to an origin not in `allowed` (data: and
 * blob: URLs aside) in `out.external`.
 */
export function watch(page, out, allowed) {
  const phase = () => out.steps.at(-1) ?? 'start';
  page.on('console', (m) => {
    if (m.type() === 'error') out.consoleErrors.push({ after: phase(), text: m.text() });
  });
  page.on('pageerror', (e) => out.consoleErrors.push({ after: phase(), text: `uncaught: ${e.message}` }));
  page.on('request', (r) => {
    const u = r.url();
    if (!allowed.some((o) => u.startsWith(o)) && !u.startsWith('data:') && !u.startsWith('blob:')) {
      out.external.push(u);
    }
  });
}
