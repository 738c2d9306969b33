// Small plotting helpers on <canvas> and SVG: axes, lines, bars. No library, nothing fetched.

const FONT = '11px system-ui, sans-serif';
const PAD = { left: 48, right: 12, top: 12, bottom: 34 };

/** Prepares a canvas for drawing at the device's pixel ratio; returns its context and size. */
function setup(canvas) {
  const ratio = window.devicePixelRatio || 1;
  if (!canvas.dataset.w) {
    canvas.dataset.w = canvas.width;
    canvas.dataset.h = canvas.height;
  }
  const w = Number(canvas.dataset.w);
  const h = Number(canvas.dataset.h);
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  canvas.style.width = `${w}px`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = FONT;
  return { ctx, w, h, pw: w - PAD.left - PAD.right, ph: h - PAD.top - PAD.bottom };
}

function fmt(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1000) return `${Math.round(v / 100) / 10}k`;
  if (a >= 10) return String(Math.round(v));
  if (a >= 1) return String(Math.round(v * 10) / 10);
  return String(Math.round(v * 100) / 100);
}

/** Axes with ticks; `x` and `y` map data to pixels; `yTicks` may be given (log scales). */
function axes(g, { xMin, xMax, yMin, yMax, xLabel, yLabel, xTicks, yTicks, xFormat = fmt, yFormat = fmt }) {
  const { ctx, w, h, pw, ph } = g;
  const x = (v) => PAD.left + ((v - xMin) / (xMax - xMin || 1)) * pw;
  const y = (v) => PAD.top + ph - ((v - yMin) / (yMax - yMin || 1)) * ph;
  ctx.strokeStyle = '#9aa4ae';
  ctx.fillStyle = '#5b6673';
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(PAD.left, PAD.top);
  ctx.lineTo(PAD.left, PAD.top + ph);
  ctx.lineTo(PAD.left + pw, PAD.top + ph);
  ctx.stroke();
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const t of xTicks ?? ticks(xMin, xMax, 6)) {
    ctx.fillText(xFormat(t), x(t), PAD.top + ph + 4);
  }
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  ctx.strokeStyle = '#eef0f2';
  for (const t of yTicks ?? ticks(yMin, yMax, 5)) {
    ctx.fillText(yFormat(t), PAD.left - 4, y(t));
    ctx.beginPath();
    ctx.moveTo(PAD.left + 1, y(t));
    ctx.lineTo(PAD.left + pw, y(t));
    ctx.stroke();
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'bottom';
  ctx.fillText(xLabel ?? '', PAD.left + pw / 2, h - 2);
  ctx.save();
  ctx.translate(11, PAD.top + ph / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = 'middle';
  ctx.fillText(yLabel ?? '', 0, 0);
  ctx.restore();
  return { x, y };
}

function ticks(min, max, n) {
  const span = max - min;
  if (!(span > 0)) return [min];
  const step0 = span / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= n) ?? mag * 10;
  const out = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) out.push(Math.round(t / step) * step);
  return out;
}

function legend(g, items) {
  const { ctx, w } = g;
  let at = w - PAD.right - 4;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'top';
  for (const { label, color } of [...items].reverse()) {
    ctx.fillStyle = '#1d232b';
    ctx.fillText(label, at, PAD.top + 2);
    at -= ctx.measureText(label).width + 4;
    ctx.fillStyle = color;
    ctx.fillRect(at - 10, PAD.top + 3, 10, 10);
    at -= 22;
  }
}

/** Lines through `series` ([{points: [[x, y]...], color, label}]), with optional marks. */
export function lines(canvas, series, opts) {
  const g = setup(canvas);
  const { x, y } = axes(g, opts);
  const { ctx } = g;
  if (opts.diagonal) {
    ctx.strokeStyle = '#c5cbd2';
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(x(opts.xMin), y(opts.yMin));
    ctx.lineTo(x(opts.xMax), y(opts.yMax));
    ctx.stroke();
    ctx.setLineDash([]);
  }
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach(([px, py], i) => (i ? ctx.lineTo(x(px), y(py)) : ctx.moveTo(x(px), y(py))));
    ctx.stroke();
  }
  for (const m of opts.marks ?? []) {
    ctx.fillStyle = m.color;
    ctx.beginPath();
    ctx.arc(x(m.x), y(m.y), 5, 0, 2 * Math.PI);
    ctx.fill();
  }
  legend(g, series.filter((s) => s.label));
}

/** Side-by-side bars per bin: `series` = [{values, color, label}], bins from `xMin` to `xMax`. */
export function bars(canvas, series, opts) {
  const g = setup(canvas);
  const bins = series[0]?.values.length ?? 0;
  const log = opts.log;
  const all = series.flatMap((s) => s.values).filter((v) => v > 0);
  let yMin = 0;
  let yMax = Math.max(1e-9, ...all);
  let yTicks;
  let tr = (v) => v;
  if (log) {
    const lo = Math.floor(Math.log10(Math.min(...all, 1)));
    yMin = lo;
    yMax = Math.max(lo + 1, Math.ceil(Math.log10(yMax)));
    yTicks = [];
    for (let e = yMin; e <= yMax; e++) yTicks.push(e);
    tr = (v) => (v > 0 ? Math.log10(v) : yMin);
  }
  const { x, y } = axes(g, {
    ...opts,
    yMin,
    yMax,
    yTicks,
    yFormat: log ? (e) => (e >= 0 ? String(10 ** e) : `1e${e}`) : fmt,
  });
  const { ctx } = g;
  const bw = (x(opts.xMax) - x(opts.xMin)) / Math.max(1, bins);
  const each = bw / series.length;
  series.forEach((s, k) => {
    ctx.fillStyle = s.color;
    s.values.forEach((v, i) => {
      if (!(v > 0)) return;
      const left = x(opts.xMin) + i * bw + k * each;
      ctx.fillRect(left, y(tr(v)), Math.max(1, each - 0.5), y(yMin) - y(tr(v)));
    });
  });
  for (const m of opts.vlines ?? []) {
    ctx.strokeStyle = m.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(x(m.x), y(yMin));
    ctx.lineTo(x(m.x), y(yMax));
    ctx.stroke();
  }
  legend(g, series.filter((s) => s.label));
}

/** Stacked bars per bin (`stacks` = [{values, color, label}]) and an optional line over them. */
export function stacked(canvas, stacks, opts) {
  const g = setup(canvas);
  const bins = stacks[0]?.values.length ?? 0;
  const totals = Array.from({ length: bins }, (_, i) => stacks.reduce((a, s) => a + s.values[i], 0));
  const yMax = Math.max(1, ...totals);
  const { x, y } = axes(g, { ...opts, yMin: 0, yMax });
  const { ctx } = g;
  const bw = (x(opts.xMax) - x(opts.xMin)) / Math.max(1, bins);
  const base = new Array(bins).fill(0);
  for (const s of stacks) {
    ctx.fillStyle = s.color;
    s.values.forEach((v, i) => {
      if (v > 0) ctx.fillRect(x(opts.xMin) + i * bw + 0.5, y(base[i] + v), bw - 1, y(base[i]) - y(base[i] + v));
      base[i] += v;
    });
  }
  if (opts.line) {
    ctx.strokeStyle = opts.line.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    opts.line.values.forEach((v, i) => {
      const px = x(opts.xMin) + (i + 0.5) * bw;
      i ? ctx.lineTo(px, y(v)) : ctx.moveTo(px, y(v));
    });
    ctx.stroke();
  }
  legend(g, [...stacks, ...(opts.line ? [opts.line] : [])].filter((s) => s.label));
}

/** A horizontal bar chart as SVG: `items` = [{label, value, highlight, title}], signed values. */
export function hbars(container, items, { width = 860, row = 20, labelWidth = 330 } = {}) {
  const ns = 'http://www.w3.org/2000/svg';
  const h = items.length * row + 24;
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${h}`);
  const max = Math.max(1e-12, ...items.map((d) => Math.abs(d.value)));
  const plotW = width - labelWidth - 90;
  const hasNeg = items.some((d) => d.value < 0);
  const zero = labelWidth + (hasNeg ? plotW / 2 : 0);
  const scale = (hasNeg ? plotW / 2 : plotW) / max;
  const el = (name, attrs, text) => {
    const e = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  items.forEach((d, i) => {
    const yy = i * row + 4;
    el('text', { x: labelWidth - 6, y: yy + row * 0.7, 'text-anchor': 'end', 'font-size': 12, fill: '#1d232b' }, d.label);
    const len = Math.abs(d.value) * scale;
    const color = d.value < 0 ? '#7fa6d9' : d.highlight ? '#c0392b' : '#e7a29a';
    const rect = el('rect', { x: d.value < 0 ? zero - len : zero, y: yy + 3, width: Math.max(0.5, len), height: row - 6, fill: color });
    if (d.title) {
      const t = document.createElementNS(ns, 'title');
      t.textContent = d.title;
      rect.appendChild(t);
    }
    const tx = d.value < 0 ? zero - len - 4 : zero + len + 4;
    el('text', { x: tx, y: yy + row * 0.7, 'text-anchor': d.value < 0 ? 'end' : 'start', 'font-size': 11, fill: '#5b6673' }, d.value.toFixed(3));
  });
  el('line', { x1: zero, x2: zero, y1: 0, y2: items.length * row + 6, stroke: '#5b6673' });
  container.replaceChildren(svg);
}
