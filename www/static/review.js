// The review queue: lists a running host's review decisions (GET /v1/reviews, newest first) and
// publishes an analyst's verdict on the labels topic (POST /v1/labels). The only part of the page
// that talks to a server, and only to the host the analyst names. The token stays in this tab's
// sessionStorage; the host URL (not a secret) in localStorage.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'tollgate.analystToken';
const HOST_KEY = 'tollgate.reviewHost';
const REFRESH_MS = 10_000;

const queue = { rows: [], loadedAt: '', loading: false, timer: null };
// What the Chromium test and curious users can reach from the console.
window.tollgateReviews = queue;

function host() {
  return $('review-host').value.trim().replace(/\/+$/, '');
}

// Calls the host; answers the JSON body, or throws an Error whose message says, in plain words,
// what went wrong.
async function call(method, path, body) {
  const base = host();
  const token = $('review-token').value.trim();
  if (!/^https?:\/\/[^/]/.test(base)) throw new Error('Host URL: give the host as http://HOST:PORT (or https://).');
  if (!token) throw new Error('Analyst token: give the host\'s admin token.');
  let response;
  try {
    response = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      cache: 'no-store',
    });
  } catch {
    throw new Error(`Could not reach ${base}: is it running, and was it started with --allow-origin ${location.origin}?`);
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    // Not JSON: said below with the status.
  }
  if (response.ok && answer?.ok) return answer;
  const said = answer?.error ?? `HTTP ${response.status} ${response.statusText}`;
  const why = {
    401: 'The host refused the token',
    403: 'The host has no admin token configured',
    400: 'The host refused the request',
    502: 'The labels topic did not take it',
    503: 'The host cannot do this',
  }[response.status] ?? `The host answered ${response.status}`;
  throw new Error(`${why}: ${said}`);
}

function fmt(v, digits) {
  return typeof v === 'number' ? v.toFixed(digits) : '–';
}

function decidedAt(us) {
  return new Date(Math.floor(us / 1000)).toISOString().slice(0, 19).replace('T', ' ');
}

function verdictText(v) {
  return v === null || v === undefined ? 'open' : v;
}

function row(item) {
  const tr = document.createElement('tr');
  const id = item.transaction_id ?? '';
  tr.dataset.transactionId = id;
  const cells = [
    decidedAt(item.decided_at_us),
    id || '(none)',
    fmt(item.amount, 2),
    fmt(item.score, 4),
    item.rules.length ? item.rules.join(', ') : 'none',
  ];
  for (const [i, text] of cells.entries()) {
    const td = tr.insertCell();
    td.textContent = text;
    td.className = `rv-c${i}`;
  }
  // The reasons, one a line: the feature, its value for this transaction, its contribution.
  const reasons = tr.insertCell();
  reasons.className = 'rv-c5';
  if (!item.reasons.length) reasons.textContent = 'none';
  for (const r of item.reasons) {
    const line = document.createElement('div');
    const value = Number.isInteger(r.value) ? String(r.value) : fmt(r.value, 4);
    line.textContent = `${r.feature} = ${value} (${fmt(r.contribution, 3)})`;
    reasons.appendChild(line);
  }
  const verdict = tr.insertCell();
  verdict.className = 'rv-verdict';
  const state = document.createElement('span');
  state.className = 'rv-state';
  state.textContent = verdictText(item.verdict);
  const note = document.createElement('span');
  note.className = 'rv-note';
  verdict.append(state, note);
  const actions = tr.insertCell();
  actions.className = 'rv-actions';
  for (const [label, fraud] of [['Fraud', true], ['Genuine', false]]) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.dataset.fraud = String(fraud);
    b.setAttribute('aria-label', `Mark transaction ${id} as ${label.toLowerCase()}`);
    b.disabled = !id;
    b.addEventListener('click', () => judge(tr, id, fraud));
    actions.appendChild(b);
  }
  return tr;
}

function count() {
  const open = queue.rows.filter((r) => r.verdict === null).length;
  $('review-count').textContent = `${queue.rows.length} review decisions, ${open} without a verdict; loaded ${queue.loadedAt} UTC.`;
}

async function load() {
  if (queue.loading) return;
  queue.loading = true;
  $('review-load').disabled = true;
  $('review-count').textContent = 'Loading…';
  $('review-error').textContent = '';
  try {
    const limit = Math.min(1000, Math.max(1, Math.floor(Number($('review-limit').value) || 50)));
    const answer = await call('GET', `/v1/reviews?limit=${limit}`);
    queue.rows = answer.reviews;
    queue.loadedAt = new Date().toISOString().slice(11, 19);
    $('review-table').tBodies[0].replaceChildren(...answer.reviews.map(row));
    $('review-table').hidden = false;
    $('review-error').textContent = '';
    count();
  } catch (e) {
    $('review-error').textContent = e.message;
    $('review-count').textContent = '';
  } finally {
    queue.loading = false;
    $('review-load').disabled = false;
  }
}

async function judge(tr, id, fraud) {
  const buttons = tr.querySelectorAll('button');
  const note = tr.querySelector('.rv-note');
  for (const b of buttons) b.disabled = true;
  note.className = 'rv-note';
  note.textContent = ' publishing…';
  try {
    const answer = await call('POST', '/v1/labels', {
      transaction_id: id,
      fraud,
      reported_at: Math.floor(Date.now() / 1000),
    });
    tr.querySelector('.rv-state').textContent = fraud ? 'fraud' : 'genuine';
    for (const r of queue.rows) if (r.transaction_id === id) r.verdict = fraud ? 'fraud' : 'genuine';
    count();
    note.className = 'rv-note ok';
    note.textContent = ` published (partition ${answer.partition}, offset ${answer.offset})`;
    $('review-error').textContent = '';
  } catch (e) {
    note.className = 'rv-note error';
    note.textContent = ' not published';
    $('review-error').textContent = `Transaction ${id}: ${e.message}`;
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

function setup() {
  $('review-origin').textContent = location.origin;
  $('review-host').value = localStorage.getItem(HOST_KEY) ?? '';
  $('review-token').value = sessionStorage.getItem(TOKEN_KEY) ?? '';
  $('review-host').addEventListener('change', () => localStorage.setItem(HOST_KEY, host()));
  $('review-token').addEventListener('change', () => sessionStorage.setItem(TOKEN_KEY, $('review-token').value.trim()));
  $('review-form').addEventListener('submit', (e) => {
    e.preventDefault();
    localStorage.setItem(HOST_KEY, host());
    sessionStorage.setItem(TOKEN_KEY, $('review-token').value.trim());
    load();
  });
  $('review-auto').addEventListener('change', (e) => {
    clearInterval(queue.timer);
    queue.timer = e.target.checked ? setInterval(load, REFRESH_MS) : null;
    if (e.target.checked) load();
  });
}

setup();
