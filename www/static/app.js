// The demo page: loads the scorer (wasm-bindgen bindings of the `www` crate) and the demo
// snapshot, scores the form, replays a day with live metrics, and takes the user's own snapshot.
// Every score comes from the scorer's JSON response; this file only draws.

import init, { Edge } from './pkg/www.js';
import * as plot from './plots.js';

const $ = (id) => document.getElementById(id);
const COLORS = { allow: '#2e8b57', review: '#d99a00', decline: '#c0392b', fraud: '#c0392b', genuine: '#2a5db0' };
const GROUP = 25; // calls per latency sample: browser clocks tick in 5-100 µs steps

const state = {
  edge: null,
  demo: { snapshot: null, key: null },
  info: null,
  day: null,
  replay: null,
};

// What the Chromium test and curious users can reach from the console.
window.tollgate = { Edge, state, ready: false, firstScoreMs: null, errors: [] };

function setStatus(text, cls) {
  const s = $('status');
  s.textContent = text;
  s.className = cls ?? '';
}

async function fetchOk(url, as) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return as === 'bytes' ? new Uint8Array(await r.arrayBuffer()) : as === 'json' ? r.json() : r.text();
}

function describe(info) {
  const model = info.model ? `model ${info.model[0]} (${info.model[1]})` : 'no model (features only)';
  const rows = info.entities.map(([name, n]) => `${n.toLocaleString('en')} ${name}`).join(', ');
  return `Snapshot ${info.snapshot_id} as of ${info.as_of} UTC: ${rows}; ${model}; review from ${info.review_at}, decline from ${info.decline_at}; ${(info.bytes / 1024).toFixed(0)} KiB, signature verified.`;
}

function applyInfo(info) {
  state.info = info;
  for (const [id, v] of [['review-th', info.review_at], ['decline-th', info.decline_at]]) {
    $(id).value = String(v);
  }
  thresholdsChanged();
}

// ---- One transaction ---------------------------------------------------------------------

function formRequest() {
  const amount = $('amount').value.trim();
  const req = {
    transaction_id: 'form',
    customer_id: $('customer').value.trim(),
    terminal_id: $('terminal').value.trim(),
    // Numbers as typed: the scorer reads JSON numbers exactly.
    amount: amount === '' ? undefined : Number(amount),
    time: $('time').value.trim(),
  };
  return JSON.stringify(req);
}

function fillForm(i) {
  const d = state.day;
  $('customer').value = d.customer_id[i];
  $('terminal').value = d.terminal_id[i];
  $('amount').value = String(d.amount[i]);
  $('time').value = new Date(d.time[i] * 1000).toISOString().slice(0, 19).replace('T', ' ');
}

function scoreForm() {
  const request = formRequest();
  const t0 = performance.now();
  const text = state.edge.score(request);
  const us = (performance.now() - t0) * 1000;
  if (window.tollgate.firstScoreMs === null) window.tollgate.firstScoreMs = performance.now();
  const r = JSON.parse(text);
  $('response-json').textContent = text;
  $('latency-out').textContent = `${us < 10 ? '< 10' : us.toFixed(0)} µs`;
  if (!r.ok) {
    $('form-error').textContent = `The scorer refused the request: ${r.error}`;
    for (const id of ['score-out', 'decision-out', 'rules-out']) $(id).textContent = '–';
    $('decision-out').className = '';
    for (const id of ['contrib-chart', 'entities', 'features']) $(id).replaceChildren();
    return r;
  }
  $('form-error').textContent = '';
  $('score-out').textContent = r.score === null ? 'not scored (a rule decided)' : r.score.toFixed(4);
  $('decision-out').textContent = r.decision;
  $('decision-out').className = `decision-${r.decision}`;
  $('rules-out').textContent = r.rules.length ? r.rules.join(', ') : 'none';
  explain(request, r);
  return r;
}

function explain(request, response) {
  let ex;
  try {
    ex = JSON.parse(state.edge.explain(request));
  } catch (e) {
    $('form-error').textContent = String(e.message ?? e);
    return;
  }
  const reasons = new Set(response.reasons.map((x) => x.feature));
  const items = ex.features
    .filter((f) => f.contribution !== null)
    .map((f) => ({
      label: f.name,
      value: f.contribution,
      highlight: reasons.has(f.name),
      title: `${f.doc}: value ${f.value}, contribution ${f.contribution}`,
    }))
    .sort((a, b) => b.value - a.value);
  if (ex.intercept !== null) items.push({ label: 'intercept', value: ex.intercept, title: 'the model intercept' });
  if (items.length) {
    plot.hbars($('contrib-chart'), items);
  } else {
    $('contrib-chart').textContent = `This model (${state.info?.model?.[1] ?? 'none'}) gives no per-feature attribution yet.`;
  }
  $('entities').replaceChildren(
    ...ex.entities.map((e) => {
      const t = table(
        [`${e.kind}: ${e.known ? 'in the snapshot' : 'unknown, scored from the cold start'}`, 'value'],
        e.aggregates.map(([label, v]) => [label, round(v)]),
      );
      return t;
    }),
  );
  $('features').replaceChildren(
    table(
      ['feature', 'value', 'contribution'],
      ex.features.map((f) => [f.name, round(f.value), f.contribution === null ? '–' : f.contribution.toFixed(4)]),
    ),
  );
}

function round(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(4);
}

function table(head, rows) {
  const t = document.createElement('table');
  const tr = t.createTHead().insertRow();
  for (const h of head) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = h;
    tr.appendChild(th);
  }
  const body = t.createTBody();
  for (const row of rows) {
    const r = body.insertRow();
    row.forEach((c) => (r.insertCell().textContent = c));
  }
  return t;
}

// ---- Replay a day ------------------------------------------------------------------------

function nextFrame() {
  return new Promise((resolve) => {
    requestAnimationFrame(() => resolve());
    setTimeout(resolve, 100);
  });
}

async function replay() {
  const d = state.day;
  const n = d.amount.length;
  const rp = {
    n,
    scored: 0,
    scores: new Float64Array(n).fill(NaN), // the model's score; 1 when a rule declined
    responses: new Array(n),
    errors: 0,
    latencies: [],
    done: false,
    t0: performance.now(),
  };
  state.replay = rp;
  window.tollgate.replay = rp;
  $('replay-btn').disabled = true;
  $('replay-progress').max = n;
  const requests = new Array(GROUP);
  while (rp.scored < n) {
    const perFrame = Number($('speed').value);
    const end = Math.min(n, rp.scored + perFrame);
    while (rp.scored < end) {
      const from = rp.scored;
      const k = Math.min(GROUP, n - from);
      for (let j = 0; j < k; j++) requests[j] = dayRequest(from + j);
      const texts = new Array(k);
      const t0 = performance.now();
      for (let j = 0; j < k; j++) texts[j] = state.edge.score(requests[j]);
      rp.latencies.push(((performance.now() - t0) * 1000) / k);
      for (let j = 0; j < k; j++) {
        const r = JSON.parse(texts[j]);
        rp.responses[from + j] = r;
        if (r.ok) rp.scores[from + j] = r.score === null ? 1 : r.score;
        else rp.errors += 1;
      }
      rp.scored += k;
    }
    $('replay-progress').value = rp.scored;
    $('replay-count').textContent = `${rp.scored.toLocaleString('en')} of ${n.toLocaleString('en')} scored`;
    redraw();
    await nextFrame();
  }
  rp.ms = performance.now() - rp.t0;
  rp.done = true;
  $('replay-btn').disabled = false;
  $('replay-count').textContent = `${n.toLocaleString('en')} scored in ${(rp.ms / 1000).toFixed(2)} s (drawing included)`;
}

function dayRequest(i) {
  const d = state.day;
  return JSON.stringify({
    transaction_id: d.transaction_id[i],
    customer_id: d.customer_id[i],
    terminal_id: d.terminal_id[i],
    amount: d.amount[i],
    time: d.time[i],
  });
}

/** Scores and labels of the transactions scored so far (errors left out). */
function scoredSoFar() {
  const rp = state.replay;
  const scores = [];
  const labels = [];
  const index = [];
  for (let i = 0; i < rp.scored; i++) {
    if (!Number.isNaN(rp.scores[i])) {
      scores.push(rp.scores[i]);
      labels.push(state.day.fraud[i] === 1);
      index.push(i);
    }
  }
  return { scores, labels, index };
}

/** Cumulative counts at each distinct score, highest first (as models::metrics does). */
export function curve(scores, labels) {
  const order = scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a]);
  const points = [];
  let tp = 0;
  let fp = 0;
  order.forEach((i, k) => {
    if (labels[i]) tp += 1;
    else fp += 1;
    const next = order[k + 1];
    if (next === undefined || scores[next] !== scores[i]) points.push({ threshold: scores[i], tp, fp });
  });
  return { points, P: tp, N: fp };
}

/** AUC ROC (ties count one half) and average precision, as scikit-learn and models define them. */
export function aucAp({ points, P, N }) {
  let area2 = 0;
  let tpPrev = 0;
  let fpPrev = 0;
  let ap = 0;
  for (const p of points) {
    area2 += (p.fp - fpPrev) * (p.tp + tpPrev);
    if (p.tp > tpPrev) ap += (((p.tp - tpPrev) / P) * p.tp) / (p.tp + p.fp);
    tpPrev = p.tp;
    fpPrev = p.fp;
  }
  return { auc: P && N ? area2 / (2 * P * N) : NaN, ap: P ? ap : NaN };
}

function thresholds() {
  return { review: Number($('review-th').value), decline: Number($('decline-th').value) };
}

function thresholdsChanged() {
  const { review, decline } = thresholds();
  $('review-th-out').textContent = review.toFixed(3);
  $('decline-th-out').textContent = decline.toFixed(3);
  if (state.replay) redraw();
}

/** Confusion counts at the current thresholds; also what the Chromium test reads. */
function confusion(scores, labels) {
  const { review, decline } = thresholds();
  const c = { tp: 0, fp: 0, tn: 0, fn: 0, by: { allow: [0, 0], review: [0, 0], decline: [0, 0] } };
  scores.forEach((s, i) => {
    const y = labels[i];
    const flagged = s >= review;
    if (flagged && y) c.tp++;
    else if (flagged) c.fp++;
    else if (y) c.fn++;
    else c.tn++;
    const decision = s >= decline ? 'decline' : flagged ? 'review' : 'allow';
    c.by[decision][y ? 0 : 1]++;
  });
  const ratio = (a, b) => (b ? a / b : 0);
  c.precision = ratio(c.tp, c.tp + c.fp);
  c.recall = ratio(c.tp, c.tp + c.fn);
  c.f1 = ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn);
  return c;
}

function redraw() {
  const rp = state.replay;
  if (!rp) return;
  const { scores, labels, index } = scoredSoFar();
  const { review, decline } = thresholds();
  const c = confusion(scores, labels);
  const cv = curve(scores, labels);
  const { auc, ap } = aucAp(cv);
  const pct = (v) => `${(v * 100).toFixed(1)} %`;
  $('m-precision').textContent = pct(c.precision);
  $('m-recall').textContent = pct(c.recall);
  $('m-f1').textContent = c.f1.toFixed(3);
  $('m-auc').textContent = Number.isNaN(auc) ? '–' : auc.toFixed(4);
  $('m-ap').textContent = Number.isNaN(ap) ? '–' : ap.toFixed(4);
  const lat = [...rp.latencies].sort((a, b) => a - b);
  const median = lat.length ? lat[Math.floor(lat.length / 2)] : NaN;
  $('m-latency').textContent = Number.isNaN(median) ? '–' : `${median.toFixed(1)} µs`;
  for (const [id, v] of [['c-tp', c.tp], ['c-fp', c.fp], ['c-fn', c.fn], ['c-tn', c.tn]]) $(id).textContent = v;
  for (const d of ['allow', 'review', 'decline']) {
    $(`d-${d}-f`).textContent = c.by[d][0];
    $(`d-${d}-g`).textContent = c.by[d][1];
  }
  window.tollgate.metrics = { ...c, n: scores.length, errors: rp.errors, auc, ap, review, decline };

  // Decisions over time: 48 half-hour bins from the day's first midnight.
  const day0 = Math.floor(state.day.time[0] / 86400) * 86400;
  const bins = 48;
  const stack = { allow: new Array(bins).fill(0), review: new Array(bins).fill(0), decline: new Array(bins).fill(0) };
  const frauds = new Array(bins).fill(0);
  index.forEach((i, k) => {
    const b = Math.min(bins - 1, Math.max(0, Math.floor((state.day.time[i] - day0) / 1800)));
    const s = scores[k];
    stack[s >= decline ? 'decline' : s >= review ? 'review' : 'allow'][b]++;
    if (labels[k]) frauds[b]++;
  });
  plot.stacked(
    $('p-time'),
    ['allow', 'review', 'decline'].map((d) => ({ values: stack[d], color: COLORS[d], label: d })),
    {
      xMin: 0,
      xMax: 24,
      xLabel: 'hour of the day (UTC)',
      yLabel: 'transactions',
      line: { values: frauds, color: '#1d232b', label: 'frauds' },
    },
  );

  // Score distribution by label: share of each class per bin.
  const nb = 50;
  const hist = [new Array(nb).fill(0), new Array(nb).fill(0)];
  const counts = [0, 0];
  scores.forEach((s, k) => {
    const cls = labels[k] ? 0 : 1;
    hist[cls][Math.min(nb - 1, Math.floor(s * nb))]++;
    counts[cls]++;
  });
  plot.bars(
    $('p-dist'),
    [
      { values: hist[0].map((v) => (counts[0] ? v / counts[0] : 0)), color: COLORS.fraud, label: `fraud (${counts[0]})` },
      { values: hist[1].map((v) => (counts[1] ? v / counts[1] : 0)), color: COLORS.genuine, label: `genuine (${counts[1]})` },
    ],
    {
      xMin: 0,
      xMax: 1,
      xLabel: 'score',
      yLabel: 'share of class',
      log: true,
      vlines: [
        { x: review, color: COLORS.review },
        { x: decline, color: COLORS.decline },
      ],
    },
  );

  // ROC and PR curves, with the review threshold marked.
  const roc = [[0, 0]];
  const pr = [];
  for (const p of cv.points) {
    roc.push([cv.N ? p.fp / cv.N : 0, cv.P ? p.tp / cv.P : 0]);
    pr.push([cv.P ? p.tp / cv.P : 0, p.tp / (p.tp + p.fp)]);
  }
  const at = { fpr: c.fp + c.tn ? c.fp / (c.fp + c.tn) : 0, tpr: c.recall, precision: c.precision };
  plot.lines($('p-roc'), [{ points: roc, color: COLORS.genuine, label: Number.isNaN(auc) ? '' : `AUC ${auc.toFixed(3)}` }], {
    xMin: 0, xMax: 1, yMin: 0, yMax: 1, xLabel: 'false positive rate', yLabel: 'true positive rate (recall)', diagonal: true,
    marks: [{ x: at.fpr, y: at.tpr, color: COLORS.review }],
  });
  plot.lines($('p-pr'), [{ points: pr, color: COLORS.fraud, label: Number.isNaN(ap) ? '' : `AP ${ap.toFixed(3)}` }], {
    xMin: 0, xMax: 1, yMin: 0, yMax: 1, xLabel: 'recall', yLabel: 'precision',
    marks: [{ x: at.tpr, y: at.precision, color: COLORS.review }],
  });

  // Latency histogram.
  if (lat.length) {
    const hi = Math.max(1, lat[Math.floor(lat.length * 0.99)] ?? lat[lat.length - 1]);
    const lb = 40;
    const lh = new Array(lb).fill(0);
    for (const v of lat) lh[Math.min(lb - 1, Math.floor((v / hi) * lb * 0.999))]++;
    plot.bars($('p-lat'), [{ values: lh, color: '#2a5db0', label: `median ${median.toFixed(1)} µs` }], {
      xMin: 0, xMax: hi, xLabel: 'µs per score', yLabel: 'samples',
    });
  }
}

// ---- Your own snapshot -------------------------------------------------------------------

async function takeFiles(files) {
  const status = $('drop-status');
  status.className = '';
  status.textContent = 'Checking…';
  try {
    let snapshot = null;
    const keys = [];
    for (const f of files) {
      const bytes = new Uint8Array(await f.arrayBuffer());
      const head = new TextDecoder().decode(bytes.slice(0, 40));
      if (head.startsWith('# tollgate edge key')) keys.push(new TextDecoder().decode(bytes));
      else if (head.startsWith('# tollgate')) {
        throw new Error(`${f.name} is a secret signing key, not an edge key: never share it. Drop the edge key (edge.key) instead.`);
      } else if (snapshot) throw new Error('Drop one snapshot at a time (with its edge key).');
      else snapshot = { name: f.name, bytes };
    }
    for (const k of keys) state.edge.trustEdgeKeys(k);
    if (!snapshot) {
      status.className = 'ok';
      status.textContent = `Trusted ${keys.length} more edge key(s). Now drop a snapshot signed with it.`;
      return;
    }
    const info = JSON.parse(state.edge.loadSnapshot(snapshot.bytes));
    applyInfo(info);
    status.className = 'ok';
    status.textContent = `Loaded ${snapshot.name}. ${describe(info)}`;
    setStatus(describe(info));
    scoreForm();
  } catch (e) {
    status.className = 'error';
    status.textContent = `Refused: ${e.message ?? e}`;
  }
}

function setupDrop() {
  const zone = $('drop');
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    takeFiles([...e.dataTransfer.files]);
  });
  $('snapshot-file').addEventListener('change', (e) => {
    takeFiles([...e.target.files]);
    e.target.value = '';
  });
  $('demo-btn').addEventListener('click', () => {
    const info = JSON.parse(state.edge.loadSnapshot(state.demo.snapshot.slice()));
    applyInfo(info);
    setStatus(describe(info));
    $('drop-status').className = 'ok';
    $('drop-status').textContent = 'Back on the demo snapshot.';
    scoreForm();
  });
}

// ---- Start -------------------------------------------------------------------------------

async function main() {
  const t0 = performance.now();
  const [, key, snapshot, day] = await Promise.all([
    init({ module_or_path: new URL('./pkg/www_bg.wasm', import.meta.url) }),
    fetchOk('demo/edge.key'),
    fetchOk('demo/snapshot.tgs', 'bytes'),
    fetchOk('demo/day.json', 'json'),
  ]);
  state.demo = { snapshot, key };
  state.day = day;
  state.edge = new Edge(key);
  const info = JSON.parse(state.edge.loadSnapshot(snapshot.slice()));
  state.edge.setReasons(3);
  applyInfo(info);
  // Start on the day's first fraud, so the first score shows reasons.
  const firstFraud = Math.max(0, day.fraud.indexOf(1));
  fillForm(firstFraud);
  scoreForm();
  const ready = performance.now();
  setStatus(`${describe(info)} Ready in ${(ready - t0).toFixed(0)} ms; first score ${window.tollgate.firstScoreMs.toFixed(0)} ms after navigation.`);
  $('tx-form').addEventListener('submit', (e) => {
    e.preventDefault();
    scoreForm();
  });
  $('random-btn').addEventListener('click', () => {
    fillForm(Math.floor(Math.random() * day.amount.length));
    scoreForm();
  });
  $('fraud-btn').addEventListener('click', () => {
    const frauds = day.fraud.flatMap((f, i) => (f ? [i] : []));
    fillForm(frauds[Math.floor(Math.random() * frauds.length)]);
    scoreForm();
  });
  $('replay-btn').textContent = `Replay ${new Date(day.time[0] * 1000).toISOString().slice(0, 10)} (${day.amount.length.toLocaleString('en')} transactions)`;
  $('replay-btn').addEventListener('click', () => replay());
  for (const id of ['review-th', 'decline-th']) $(id).addEventListener('input', thresholdsChanged);
  setupDrop();
  window.tollgate.ready = true;
}

main().catch((e) => {
  window.tollgate.errors.push(String(e.message ?? e));
  setStatus(`The page could not start: ${e.message ?? e}`, 'error');
});
