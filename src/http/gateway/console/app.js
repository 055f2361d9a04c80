// Sluice console: a small hash-routed single-page app over the JSON API at
// /ui/api/*, plus a live tail over the /v1/ws/consume WebSocket.
// Data reaches the page only as text nodes (never innerHTML).
'use strict';

const REFRESH_MS = 2000; // how often a shown page reloads its data
const TAIL_WINDOW = 100; // records the tail may have in flight (credits)
const TAIL_MAX = 200; // records kept in the tail list

const view = document.getElementById('view');
const errorBox = document.getElementById('error');

// ---------------------------------------------------------------- formatting

const nf0 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const isNum = (n) => typeof n === 'number' && Number.isFinite(n);

/** An integer with thousands separators, e.g. 12,345. */
const fmtNum = (n) => (isNum(n) ? nf0.format(n) : '–');
/** A rate with one decimal, e.g. 1,234.5. */
const fmtRate = (n) => (isNum(n) ? nf1.format(n) : '–');

/** Bytes as B, KiB, MiB, GiB, … with one decimal. */
function fmtBytes(n) {
  if (!isNum(n)) return '–';
  if (Math.abs(n) < 1024) return `${nf0.format(n)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n / 1024;
  let i = 0;
  for (; Math.abs(v) >= 1024 && i < units.length - 1; i++) v /= 1024;
  return `${nf1.format(v)} ${units[i]}`;
}

/** Seconds as e.g. "2d 3h 4m" or "5m 6s". */
function fmtDuration(s) {
  if (!isNum(s)) return '–';
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** Epoch milliseconds as a local HH:MM:SS. */
const fmtClock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

// ----------------------------------------------------------------------- DOM

/**
 * Creates an element. attrs: "class", "testid" (data-testid) or any attribute;
 * children: nodes or strings (strings become text nodes), arrays are flattened.
 */
function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'testid') e.setAttribute('data-testid', v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c == null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** A numeric (right-aligned) cell. */
const numCell = (text, attrs) => h('td', { class: 'num', ...attrs }, text);

/** A table with a header row and an empty body; headers starting with "#" are numeric. */
function makeTable(id, headers) {
  const ths = headers.map((t) =>
    t.startsWith('#') ? h('th', { class: 'num' }, t.slice(1)) : h('th', null, t));
  return h('table', { id }, h('thead', null, h('tr', null, ths)), h('tbody'));
}

/** Replaces a table's body rows; shows emptyText when there are none. */
function fillTable(table, rows, emptyText) {
  if (!rows.length) {
    const span = table.tHead.rows[0].cells.length;
    rows = [h('tr', { class: 'empty' }, h('td', { colspan: span }, emptyText))];
  }
  table.tBodies[0].replaceChildren(...rows);
}

const topicHref = (name) => `#/topics/${encodeURIComponent(name)}`;
const tailHref = (name) => `#/tail/${encodeURIComponent(name)}`;
const groupHref = (id) => `#/groups/${encodeURIComponent(id)}`;
const byKey = (k) => (a, b) => String(a[k]).localeCompare(String(b[k]));

/** Shows a message in #error, or hides it when msg is empty. */
function showError(msg) {
  errorBox.textContent = msg || '';
  errorBox.hidden = !msg;
}

// ----------------------------------------------------------------------- API

/** GETs JSON; throws an Error with a readable message on failure. */
async function api(path) {
  let res;
  try {
    res = await fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  } catch (e) {
    throw new Error(`Network error: ${e.message}`);
  }
  const body = await res.json().catch(() => null); // not JSON: the status says enough
  if (res.status === 401) throw new Error('Authentication required');
  if (!res.ok) {
    const msg = (body && body.message) || `HTTP ${res.status} ${res.statusText}`.trim();
    throw new Error(body && body.error_code ? `${msg} (error ${body.error_code})` : msg);
  }
  return body;
}

// -------------------------------------------------------------------- router

let generation = 0; // bumped on navigation; async work from older pages is dropped
let timer = null; // the current page's refresh timer
let socket = null; // the tail page's WebSocket

/** Stops whatever the previous page was doing. */
function teardown() {
  generation++;
  clearTimeout(timer);
  timer = null;
  if (socket) socket.close();
  socket = null;
}

/** Loads url now and every REFRESH_MS while this page is shown, passing the JSON to render. */
function poll(url, render) {
  const mine = generation;
  const tick = async () => {
    try {
      const data = await api(url);
      if (mine !== generation) return;
      render(data);
      showError('');
    } catch (e) {
      if (mine !== generation) return;
      showError(e.message);
    }
    timer = setTimeout(tick, REFRESH_MS);
  };
  tick();
}

/** The hash as [section, decoded argument], e.g. "#/topics/a%2Fb" → ["topics", "a/b"]. */
function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  const arg = parts.slice(1).join('/');
  try {
    return [parts[0] || 'overview', decodeURIComponent(arg)];
  } catch (_) {
    return [parts[0] || 'overview', arg]; // malformed escape: keep it as written
  }
}

/** Renders the page the hash names. */
function route() {
  teardown();
  showError('');
  view.replaceChildren();
  const [section, arg] = parseHash();
  for (const a of document.querySelectorAll('#nav a')) {
    const on = a.dataset.route === section || (section === 'tail' && a.dataset.route === 'topics');
    a.classList.toggle('active', on);
  }
  if (section === 'overview') pageOverview();
  else if (section === 'topics') arg ? pageTopic(arg) : pageTopics();
  else if (section === 'groups') arg ? pageGroup(arg) : pageGroups();
  else if (section === 'tail' && arg) pageTail(arg);
  else {
    document.title = 'Not found · Sluice';
    view.append(h('h2', null, 'Page not found'), h('p', null, h('a', { href: '#/' }, 'Back to the overview')));
  }
}

function setClusterId(id) {
  document.getElementById('cluster-id').textContent = id || '';
}

// --------------------------------------------------------------------- pages

// Overview cards: key in the API, label, formatter.
const OVERVIEW_CARDS = [
  ['topics', 'Topics', fmtNum],
  ['partitions', 'Partitions', fmtNum],
  ['groups', 'Groups', fmtNum],
  ['connections', 'Connections', fmtNum],
  ['disk_bytes', 'Disk usage', fmtBytes],
  ['bytes_in_per_sec', 'Bytes in', (v) => `${fmtBytes(v)}/s`],
  ['bytes_out_per_sec', 'Bytes out', (v) => `${fmtBytes(v)}/s`],
  ['messages_in_per_sec', 'Messages in / s', fmtRate],
  ['uptime_seconds', 'Uptime', fmtDuration],
  ['version', 'Version', String],
  ['node_id', 'Node id', String],
  ['cluster_id', 'Cluster id', String],
];

function pageOverview() {
  document.title = 'Overview · Sluice';
  // Each card's text is just its value; the CSS shows data-label above it.
  const cards = OVERVIEW_CARDS.map(([key, label]) =>
    h('div', { class: 'card', testid: `overview-${key}`, 'data-label': label }, '…'));
  view.append(h('h2', null, 'Overview'), h('div', { id: 'overview' }, cards));
  poll('/ui/api/overview', (o) => {
    setClusterId(o.cluster_id);
    OVERVIEW_CARDS.forEach(([key, , fmt], i) => {
      cards[i].textContent = o[key] == null ? '–' : fmt(o[key]);
    });
  });
}

function pageTopics() {
  document.title = 'Topics · Sluice';
  const table = makeTable('topics-table', ['Name', '#Partitions', '#Messages', '#Size', '']);
  view.append(h('h2', null, 'Topics'), table);
  poll('/ui/api/topics', (topics) => {
    const rows = [...topics].sort(byKey('name')).map((t) =>
      h('tr', { testid: `topic-row-${t.name}` },
        h('td', null, h('a', { href: topicHref(t.name) }, t.name)),
        numCell(fmtNum(t.partitions)),
        numCell(fmtNum(t.messages)),
        numCell(fmtBytes(t.size_bytes)),
        h('td', null, h('a', { href: tailHref(t.name) }, 'Tail'))));
    fillTable(table, rows, 'No topics yet.');
  });
}

function pageTopic(name) {
  document.title = `${name} · Topics · Sluice`;
  const parts = makeTable('partitions-table',
    ['#Partition', '#Log start', '#High watermark', '#Messages', '#Size']);
  const configs = makeTable('configs-table', ['Key', 'Value']);
  view.append(
    h('h2', null, `Topic ${name}`),
    h('p', { class: 'meta' },
      h('a', { href: '#/topics' }, '← All topics'), ' · ',
      h('a', { href: tailHref(name), testid: 'live-tail-link' }, 'Live tail')),
    h('h3', null, 'Partitions'), parts,
    h('h3', null, 'Configs'), configs);
  poll(`/ui/api/topics/${encodeURIComponent(name)}`, (t) => {
    fillTable(parts, (t.partitions || []).map((p) =>
      h('tr', { testid: `partition-row-${p.partition}` },
        numCell(String(p.partition)),
        numCell(fmtNum(p.log_start_offset)),
        numCell(fmtNum(p.high_watermark)),
        numCell(fmtNum(p.high_watermark - p.log_start_offset)),
        numCell(fmtBytes(p.size_bytes)))), 'No partitions.');
    const entries = Object.entries(t.configs || {}).sort((a, b) => a[0].localeCompare(b[0]));
    fillTable(configs, entries.map(([k, v]) =>
      h('tr', { testid: `config-row-${k}` },
        h('td', { class: 'mono config-key' }, k),
        h('td', { class: 'mono config-value' }, v == null ? '' : String(v)))), 'No configs to show.');
  });
}

function pageGroups() {
  document.title = 'Groups · Sluice';
  const table = makeTable('groups-table', ['Group', 'Type', 'State', '#Members', '#Lag']);
  view.append(h('h2', null, 'Groups'), table);
  poll('/ui/api/groups', (groups) => {
    const rows = [...groups].sort(byKey('group')).map((g) =>
      h('tr', { testid: `group-row-${g.group}` },
        h('td', null, h('a', { href: groupHref(g.group) }, g.group)),
        h('td', null, g.type),
        h('td', null, g.state),
        numCell(fmtNum(g.members)),
        numCell(fmtNum(g.lag))));
    fillTable(table, rows, 'No groups yet.');
  });
}

function pageGroup(id) {
  document.title = `${id} · Groups · Sluice`;
  const state = h('strong', { id: 'group-state' }, '…');
  const type = h('strong', { id: 'group-type' }, '…');
  const members = makeTable('members-table', ['Member id', 'Client id', 'Host', 'Assignment']);
  const lag = makeTable('lag-table',
    ['Topic', '#Partition', '#Committed', '#End', '#Lag', '#Lag seconds']);
  const total = h('span', { testid: 'group-total-lag' }, '');
  const chart = h('canvas', { id: 'lag-chart', width: 600, height: 160 });
  view.append(
    h('h2', null, `Group ${id}`),
    h('p', { class: 'meta' },
      h('a', { href: '#/groups' }, '← All groups'), ' · State ', state, ' · Type ', type),
    h('h3', null, 'Members'), members,
    h('h3', null, 'Lag ', total), lag,
    h('h3', null, 'Total lag over time'), chart);
  poll(`/ui/api/groups/${encodeURIComponent(id)}`, (g) => {
    state.textContent = g.state;
    type.textContent = g.type;
    fillTable(members, (g.members || []).map((m) =>
      h('tr', null,
        h('td', { class: 'mono' }, m.member_id),
        h('td', null, m.client_id),
        h('td', null, m.host),
        h('td', null, (m.assignment || []).map((a) => `${a.topic}-${a.partition}`).join(', ')))),
    'No members.');
    const lags = g.lag || [];
    total.textContent = `(total ${fmtNum(lags.reduce((s, l) => s + (l.lag || 0), 0))})`;
    fillTable(lag, lags.map((l) =>
      h('tr', { testid: `lag-row-${l.topic}-${l.partition}` },
        h('td', null, l.topic),
        numCell(String(l.partition)),
        numCell(fmtNum(l.committed)),
        numCell(fmtNum(l.end)),
        // Plain integer (no separators) so tests can parse it.
        h('td', { class: 'num lag', testid: `lag-${l.topic}-${l.partition}` }, String(l.lag)),
        numCell(isNum(l.lag_seconds) ? `${l.lag_seconds.toFixed(1)} s` : '–'))),
    'No committed offsets.');
    drawLagChart(chart, g.history || []);
  });
}

/** Draws history ([{t, lag}]) as a line, with min/max and first/last time labels. */
function drawLagChart(canvas, history) {
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const { width: W, height: H } = canvas;
  const [L, R, T, B] = [60, 12, 10, 22]; // plot margins: left, right, top, bottom
  const pts = history.filter((p) => isNum(p.t) && isNum(p.lag)).sort((a, b) => a.t - b.t);
  ctx.clearRect(0, 0, W, H);
  Object.assign(ctx, { font: '11px system-ui, sans-serif', fillStyle: '#667085', strokeStyle: '#c8ced8', lineWidth: 1 });
  ctx.beginPath(); // axes
  ctx.moveTo(L + 0.5, T);
  ctx.lineTo(L + 0.5, H - B + 0.5);
  ctx.lineTo(W - R, H - B + 0.5);
  ctx.stroke();
  if (!pts.length) {
    Object.assign(ctx, { textAlign: 'center', textBaseline: 'middle' });
    ctx.fillText('No history yet', (L + W - R) / 2, (H - B) / 2);
    return;
  }
  const t0 = pts[0].t;
  const t1 = Math.max(pts[pts.length - 1].t, t0 + 1);
  const lo = pts.reduce((m, p) => Math.min(m, p.lag), Infinity);
  const hi = pts.reduce((m, p) => Math.max(m, p.lag), -Infinity);
  const top = hi > lo ? hi : lo + 1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - ((v - lo) / (top - lo)) * (H - T - B);
  Object.assign(ctx, { textAlign: 'right', textBaseline: 'top' });
  ctx.fillText(fmtNum(hi), L - 6, T);
  ctx.textBaseline = 'bottom';
  ctx.fillText(fmtNum(lo), L - 6, H - B);
  ctx.textBaseline = 'top';
  ctx.fillText(fmtClock(pts[pts.length - 1].t), W - R, H - B + 5);
  ctx.textAlign = 'left';
  ctx.fillText(fmtClock(t0), L, H - B + 5);
  Object.assign(ctx, { strokeStyle: '#2f6fde', fillStyle: '#2f6fde', lineWidth: 2, lineJoin: 'round' });
  ctx.beginPath();
  pts.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.lag)) : ctx.moveTo(x(p.t), y(p.lag))));
  ctx.stroke();
  if (pts.length === 1) ctx.fillRect(x(t0) - 2, y(pts[0].lag) - 2, 4, 4);
}

// ----------------------------------------------------------------- live tail

function pageTail(topic) {
  document.title = `Tail ${topic} · Sluice`;
  const status = h('span', { id: 'tail-status' }, 'connecting');
  const log = h('ul', { id: 'tail-log' });
  const key = h('input', { id: 'produce-key', name: 'key', placeholder: 'key (optional)', autocomplete: 'off' });
  const value = h('input', { id: 'produce-value', name: 'value', placeholder: 'value', autocomplete: 'off' });
  const submit = h('button', { id: 'produce-submit', type: 'submit' }, 'Produce');
  const result = h('span', { id: 'produce-result', role: 'status' });
  const form = h('form', { id: 'produce-form', class: 'produce' },
    h('h3', null, 'Produce a test record'), key, value, submit, result);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    produce(topic, key.value, value.value, submit, result);
  });
  view.append(
    h('h2', null, `Live tail: ${topic}`),
    h('p', { class: 'meta' },
      h('a', { href: topicHref(topic) }, '← Topic details'), ' · Status ', status,
      ` · newest first, last ${TAIL_MAX} kept`),
    form,
    h('h3', null, 'Records'),
    log);
  openTail(topic, status, log);
}

/** Opens the consume WebSocket from the latest offset and shows records as they come. */
function openTail(topic, status, log) {
  const setStatus = (s) => {
    status.textContent = s;
    status.className = s;
  };
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${scheme}//${location.host}/v1/ws/consume?topic=${encodeURIComponent(topic)}`
    + '&offset=latest&format=string';
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    setStatus('closed');
    showError(`Cannot open the live tail: ${e.message}`);
    return;
  }
  socket = ws;
  // Grants the server permission to send n more records.
  const credit = (n) => {
    if (n > 0 && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'credit', records: n }));
  };
  ws.addEventListener('open', () => {
    setStatus('connected');
    credit(TAIL_WINDOW);
  });
  ws.addEventListener('close', () => setStatus('closed'));
  ws.addEventListener('message', (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (_) { return; } // not a JSON text frame
    if (msg.type === 'records' && Array.isArray(msg.records)) {
      for (const r of msg.records) log.prepend(recordItem(r));
      while (log.children.length > TAIL_MAX) log.lastElementChild.remove();
      credit(msg.records.length); // keep the window at TAIL_WINDOW
    } else if (msg.type === 'error') {
      showError(`${msg.message || 'Live tail error'} (error ${msg.error_code})`);
    }
    // "assignment" and anything else: nothing to show.
  });
}

/** One tail line: "p<partition>@<offset> <key>: <value>". */
function recordItem(r) {
  const text = (v) => (v == null ? 'null' : String(v));
  return h('li', { testid: 'tail-record', title: isNum(r.timestamp) ? new Date(r.timestamp).toISOString() : null },
    h('span', { class: 'pos' }, `p${r.partition}@${r.offset}`), ' ',
    h('span', { class: 'key' }, text(r.key)), ': ',
    h('span', { class: 'val' }, text(r.value)));
}

/** Base64 of a string's UTF-8 bytes. */
function base64(s) {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** POSTs one record through the REST produce endpoint and reports where it went. */
async function produce(topic, key, value, button, out) {
  const report = (text, failed) => {
    out.textContent = text;
    out.className = failed ? 'failed' : 'ok';
  };
  button.disabled = true;
  report('producing…', false);
  const body = { records: [{ key: key === '' ? null : base64(key), value: base64(value) }] };
  try {
    const res = await fetch(`/topics/${encodeURIComponent(topic)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/vnd.kafka.binary.v2+json' },
      credentials: 'same-origin',
      body: JSON.stringify(body),
    });
    const data = await res.json().catch(() => null);
    const first = data && Array.isArray(data.offsets) ? data.offsets[0] : null;
    if (res.status === 401) report('Authentication required', true);
    else if (res.ok && first && first.error_code == null) {
      report(`produced to partition ${first.partition} at offset ${first.offset}`, false);
    } else {
      report((first && first.error) || (data && data.message) || `HTTP ${res.status}`, true);
    }
  } catch (e) {
    report(`Network error: ${e.message}`, true);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------- boot

window.addEventListener('hashchange', route);
route();
// The header's cluster id; the overview page keeps it fresh when shown.
if (parseHash()[0] !== 'overview') {
  api('/ui/api/overview').then((o) => setClusterId(o.cluster_id)).catch(() => {});
}
