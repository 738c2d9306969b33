// Live monitoring: a running host's drift report (GET /v1/monitoring, no token, readable from any
// origin): per feature and for the score, the PSI of the live window against the snapshot's
// reference, whether its alarm is on, and the share per bin, reference against live; and the
// request fields that came missing or invalid. Talks only to the host the user names (the same
// host URL as the review queue, kept in localStorage).

const $ = (id) => document.getElementById(id);
const HOST_KEY = 'tollgate.reviewHost';
const REFRESH_MS = 5_000;
const SVG = 'http://www.w3.org/2000/svg';

const view = { report: null, loadedAt: '', loads: 0, loading: false, timer: null };
// What the Chromium test and curious users can reach from the console.
window.tollgateMonitoring = view;

function host() {
  return $('monitor-host').value.trim().replace(/\/+$/, '');
}

// The report, or an Error whose message says in plain words what went wrong.
async function fetchReport() {
  const base = host();
  if (!/^https?:\/\/[^/]/.test(base)) throw new Error('Host URL: give the host as http://HOST:PORT (or https://).');
  let response;
  try {
    response = await fetch(`${base}/v1/monitoring`, { cache: 'no-store' });
  } catch {
    throw new Error(`Could not reach ${base}: is tollgate serve running there, and is the address right?`);
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    // Not JSON: said below with the status.
  }
  if (response.ok && answer && Array.isArray(answer.features)) return answer;
  if (response.status === 404 && answer?.error_kind === 'no_monitor') {
    throw new Error('The host has drift monitoring turned off (it was started with --no-drift-monitor).');
  }
  if (response.ok) throw new Error(`${base}/v1/monitoring did not answer a drift report: is this a tollgate host?`);
  const said = answer?.error ?? `HTTP ${response.status} ${response.statusText}`;
  throw new Error(`The host answered ${response.status}: ${said}`);
}

function fmtPsi(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(3) : '–';
}

function pct(v) {
  return `${(100 * v).toFixed(1)} %`;
}

function binLabel(edges, i) {
  const f = (x) => (Number.isInteger(x) ? String(x) : x.toPrecision(3));
  if (!edges.length) return 'all values';
  if (i === 0) return `below ${f(edges[0])}`;
  if (i === edges.length) return `${f(edges[i - 1])} and above`;
  return `${f(edges[i - 1])} to ${f(edges[i])}`;
}

// Per bin, two bars side by side: reference (grey) and live (blue, red when alarmed), heights
// scaled to the largest share of either. Each bin has a <title> with its range and shares.
function bars(series) {
  const n = series.reference.length;
  const w = 9, gap = 4, h = 34;
  const top = Math.max(1e-9, ...series.reference, ...series.live);
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('width', String(n * (2 * w + gap)));
  svg.setAttribute('height', String(h));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${series.name}: share per bin, reference against live`);
  for (let i = 0; i < n; i++) {
    const g = document.createElementNS(SVG, 'g');
    const title = document.createElementNS(SVG, 'title');
    title.textContent = `${binLabel(series.edges, i)}: reference ${pct(series.reference[i])}, live ${pct(series.live[i] ?? 0)}`;
    g.appendChild(title);
    for (const [k, share] of [[0, series.reference[i]], [1, series.live[i] ?? 0]]) {
      const r = document.createElementNS(SVG, 'rect');
      const bh = Math.max(share > 0 ? 1 : 0, Math.round((share / top) * (h - 2)));
      r.setAttribute('x', String(i * (2 * w + gap) + k * w));
      r.setAttribute('y', String(h - bh));
      r.setAttribute('width', String(w - 1));
      r.setAttribute('height', String(bh));
      r.setAttribute('class', k === 0 ? 'mon-ref' : 'mon-live');
      g.appendChild(r);
    }
    svg.appendChild(g);
  }
  return svg;
}

function row(series, quiet) {
  const tr = document.createElement('tr');
  tr.dataset.feature = series.name;
  if (series.alarm) tr.className = 'mon-alarmed';
  const name = document.createElement('th');
  name.scope = 'row';
  name.textContent = series.name;
  tr.appendChild(name);
  const psi = tr.insertCell();
  psi.className = 'mon-psi';
  psi.textContent = fmtPsi(series.psi);
  const state = tr.insertCell();
  state.className = 'mon-state';
  // Marked by words and a symbol, not by colour alone.
  state.textContent = series.alarm ? '⚠ ALARM' : quiet ? 'ok (never alarms)' : 'ok';
  const chart = tr.insertCell();
  chart.className = 'mon-bars';
  chart.appendChild(bars(series));
  return tr;
}

function show(report) {
  const quiet = (name) => name === 'TX_DURING_WEEKEND' || name === 'TX_DURING_NIGHT';
  const all = [...report.features, ...(report.score ? [report.score] : [])];
  $('monitor-table').tBodies[0].replaceChildren(...all.map((s) => row(s, quiet(s.name) && !s.alarm)));
  $('monitor-table').hidden = all.length === 0;
  $('monitor-snapshot').textContent = report.snapshot_id ?? '(none yet)';
  $('monitor-samples').textContent = `${report.samples.toLocaleString('en')} of ${report.window.toLocaleString('en')}`;
  $('monitor-alarms').textContent = report.alarms.length ? report.alarms.join(', ') : 'none';
  $('monitor-alarms').className = report.alarms.length ? 'mon-alarm-list' : '';
  const ref = report.reference;
  let note = '';
  if (!ref) {
    note = 'The serving snapshot carries no drift reference (build it with tollgate snapshot build --reference-days N): nothing to compare with.';
  } else if (report.samples < report.min_samples) {
    note = `Alarms wait for ${report.min_samples.toLocaleString('en')} scored requests in the window.`;
  }
  $('monitor-note').textContent = note;
  const fields = Object.entries(report.invalid_fields ?? {});
  const list = $('monitor-fields');
  list.replaceChildren(...fields.map(([field, c]) => {
    const li = document.createElement('li');
    li.dataset.field = field;
    li.textContent = `${field}: ${c.missing} missing, ${c.invalid} invalid`;
    return li;
  }));
  if (!fields.length) {
    const li = document.createElement('li');
    li.textContent = 'none since the host started';
    list.appendChild(li);
  }
  $('monitor-requests').textContent = `${report.requests.toLocaleString('en')} requests on this snapshot, ${report.unscored.toLocaleString('en')} not scored by the model`;
}

async function load() {
  if (view.loading) return;
  view.loading = true;
  $('monitor-load').disabled = true;
  try {
    const report = await fetchReport();
    view.report = report;
    view.loadedAt = new Date().toISOString().slice(11, 19);
    view.loads += 1;
    show(report);
    $('monitor-summary').hidden = false;
    $('monitor-error').textContent = '';
    $('monitor-updated').textContent = `Loaded ${view.loadedAt} UTC.`;
  } catch (e) {
    $('monitor-error').textContent = e.message;
    $('monitor-updated').textContent = '';
  } finally {
    view.loading = false;
    $('monitor-load').disabled = false;
  }
}

function auto(on) {
  clearInterval(view.timer);
  view.timer = on ? setInterval(load, REFRESH_MS) : null;
}

function setup() {
  $('monitor-host').value = localStorage.getItem(HOST_KEY) ?? '';
  $('monitor-host').addEventListener('change', () => localStorage.setItem(HOST_KEY, host()));
  $('monitor-form').addEventListener('submit', (e) => {
    e.preventDefault();
    localStorage.setItem(HOST_KEY, host());
    load();
    auto($('monitor-auto').checked);
  });
  $('monitor-auto').addEventListener('change', (e) => {
    auto(e.target.checked);
    if (e.target.checked) load();
  });
}

setup();
