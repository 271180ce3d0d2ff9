// dashboard.js: the relay's dashboard. It polls the admin server's JSON API (relative to the
// page) every 2 seconds and shows it. Rules kept throughout: row data (topics, keys, errors,
// names) reaches the page only as text (textContent, never as HTML); the bearer token lives
// in sessionStorage and travels only in the Authorization header.

import {LineChart} from './chart.js';

const POLL_MS = 2000;
const TOKEN_KEY = 'outbox.admin.token';
const HOUR_MS = 3600 * 1000;

const $ = id => document.getElementById(id);

// ---- Formatting ----------------------------------------------------------------------

const nf = new Intl.NumberFormat('en-US');

function fmtCount(n) { return n == null ? '–' : nf.format(n); }

function fmtRate(v) {
  if (v == null) return '–';
  if (v >= 100) return nf.format(Math.round(v));
  if (v >= 10) return v.toFixed(1);
  return v === 0 ? '0' : v.toFixed(2);
}

function fmtSeconds(s) {
  if (s == null || !isFinite(s)) return '–';
  if (s <= 0) return '0 s';
  if (s < 0.001) return (s * 1e6).toFixed(0) + ' µs';
  if (s < 1) return (s < 0.01 ? (s * 1000).toFixed(1) : Math.round(s * 1000)) + ' ms';
  if (s < 60) return (s < 10 ? s.toFixed(1) : Math.floor(s)) + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor(s % 3600 / 60) + ' min';
  return Math.floor(s / 86400) + ' d ' + Math.floor(s % 86400 / 3600) + ' h';
}

function fmtBytes(n) {
  if (n == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
}

function pad(n) { return String(n).padStart(2, '0'); }

// fmtTime is a time of the API (RFC 3339) in the browser's zone, with how long ago it was.
function fmtTime(iso) {
  const ms = Date.parse(iso);
  if (!iso || isNaN(ms) || ms <= 0) return '–';
  const d = new Date(ms);
  let s = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  if (new Date().toDateString() !== d.toDateString()) s = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + s;
  const ago = (Date.now() - ms) / 1000;
  return s + (ago < -0.5 ? ' (in ' + fmtSeconds(-ago) + ')' : ' (' + fmtSeconds(Math.max(0, ago)) + ' ago)');
}

// ---- DOM helpers: text only ------------------------------------------------------------

function setText(node, text) {
  text = String(text);
  if (node.textContent !== text) node.textContent = text;
}

function button(label, cls, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = cls;
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

// cells fills the cells of tr from specs: a string or number (the cell's text), an object
// {text, cls, title}, or a function(td) that fills the cell itself.
function cells(tr, specs) {
  while (tr.cells.length < specs.length) tr.insertCell();
  specs.forEach((spec, i) => {
    const td = tr.cells[i];
    if (typeof spec === 'function') {
      spec(td);
      return;
    }
    if (spec == null || typeof spec !== 'object') spec = {text: spec ?? ''};
    setText(td, spec.text ?? '');
    const cls = spec.cls || '';
    if (td.className !== cls) td.className = cls;
    if (spec.title !== undefined && td.title !== spec.title) td.title = spec.title;
  });
}

// syncRows shows items in tbody, a row each, keyed by key(item): the row of an item already
// shown is updated in place (so that a button does not vanish under the pointer), others are
// made anew; render(tr, item) fills a row. Without items, one row says emptyText.
function syncRows(tbody, items, key, render, emptyText) {
  const old = tbody.rowsByKey || new Map();
  const next = new Map();
  const rows = [];
  for (const item of items) {
    const k = key(item);
    if (next.has(k)) continue;
    let tr = old.get(k);
    if (!tr) tr = document.createElement('tr');
    tr.item = item;
    render(tr, item);
    next.set(k, tr);
    rows.push(tr);
  }
  if (!rows.length) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = tr.insertCell();
    td.colSpan = tbody.closest('table').tHead.rows[0].cells.length;
    td.textContent = emptyText;
    rows.push(tr);
  }
  // Remove the rows that go first, then move or insert only what is out of place: a row that
  // stays is never taken out of the page (a click on it would be lost).
  const keep = new Set(rows);
  for (const tr of [...tbody.children]) if (!keep.has(tr)) tr.remove();
  rows.forEach((tr, i) => {
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
  });
  tbody.rowsByKey = next;
}

// facts fills a <dl> with [term, value, cls] pairs.
function facts(dl, pairs) {
  const nodes = [];
  for (const [term, value, cls] of pairs) {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = value;
    if (cls) dd.className = cls;
    nodes.push(dt, dd);
  }
  dl.replaceChildren(...nodes);
}

// ---- The API, with the token -------------------------------------------------------------

class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const auth = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  asking: null, // the open token dialog's promise
  refused: false, // the user closed the dialog: reads that need a token fail quietly until the Token button
};

function setToken(tok) {
  auth.token = tok;
  if (tok) sessionStorage.setItem(TOKEN_KEY, tok);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// api calls the admin API: path relative to the page, a JSON body for mutations. A 401 or
// 403 opens the token dialog, and the call is made again with the token given there.
async function api(path, {method = 'GET', body} = {}) {
  for (;;) {
    const used = auth.token;
    const headers = {Accept: 'application/json'};
    if (used) headers.Authorization = 'Bearer ' + used;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store', credentials: 'omit', redirect: 'error'});
    } catch (e) {
      throw new APIError(0, 'the admin server does not answer (' + e.message + ')');
    }
    let data = null;
    try {
      data = await resp.json();
    } catch {
      // not JSON: the status says it
    }
    const msg = data && typeof data.error === 'string' ? data.error : resp.status + ' ' + resp.statusText;
    if (resp.status === 401 || resp.status === 403) {
      if (auth.token !== used) continue; // a token was given meanwhile
      if (method === 'GET' && auth.refused) throw new APIError(resp.status, msg);
      if (!await askToken(msg)) throw new APIError(resp.status, msg);
      continue;
    }
    if (!resp.ok) throw new APIError(resp.status, msg);
    return data;
  }
}

// askToken opens the token dialog once for every caller waiting; it resolves true when the
// user gave a token.
function askToken(reason) {
  if (!auth.asking) auth.asking = tokenDialog(reason).finally(() => { auth.asking = null; });
  return auth.asking;
}

function tokenDialog(reason) {
  return new Promise(resolve => {
    const d = $('token-dialog');
    const form = $('token-form');
    const input = $('token-input');
    setText($('token-reason'), reason);
    input.value = '';
    const finish = given => {
      form.removeEventListener('submit', onSubmit);
      $('token-cancel').removeEventListener('click', onCancel);
      $('token-forget').removeEventListener('click', onForget);
      d.removeEventListener('cancel', onCancel);
      if (d.open) d.close();
      input.value = '';
      resolve(given);
    };
    const onSubmit = ev => {
      ev.preventDefault();
      const tok = input.value.trim();
      if (!tok) return;
      setToken(tok);
      auth.refused = false;
      finish(true);
    };
    const onCancel = ev => {
      ev.preventDefault();
      auth.refused = true;
      banner('Some figures need a token: use the Token button.');
      finish(false);
    };
    const onForget = ev => {
      ev.preventDefault();
      setToken('');
      auth.refused = true;
      finish(false);
    };
    form.addEventListener('submit', onSubmit);
    $('token-cancel').addEventListener('click', onCancel);
    $('token-forget').addEventListener('click', onForget);
    d.addEventListener('cancel', onCancel);
    d.showModal();
    input.focus();
  });
}

// confirmDialog asks before a change: resolves {ok, value} (value: the optional input's).
function confirmDialog({title, text, warning, ok, input}) {
  return new Promise(resolve => {
    const d = $('confirm-dialog');
    const form = $('confirm-form');
    setText($('confirm-title'), title);
    setText($('confirm-text'), text);
    $('confirm-warning').hidden = !warning;
    setText($('confirm-warning'), warning || '');
    setText($('confirm-ok'), ok);
    $('confirm-ok').className = /^(Purge|Delete)/.test(ok) ? 'danger' : '';
    $('confirm-input-label').hidden = !input;
    $('confirm-input').value = '';
    const finish = res => {
      form.removeEventListener('submit', onSubmit);
      $('confirm-cancel').removeEventListener('click', onCancel);
      d.removeEventListener('cancel', onCancel);
      if (d.open) d.close();
      resolve(res);
    };
    const onSubmit = ev => {
      ev.preventDefault();
      finish({ok: true, value: $('confirm-input').value.trim()});
    };
    const onCancel = ev => {
      ev.preventDefault();
      finish({ok: false});
    };
    form.addEventListener('submit', onSubmit);
    $('confirm-cancel').addEventListener('click', onCancel);
    d.addEventListener('cancel', onCancel);
    d.showModal();
    $('confirm-ok').focus();
  });
}

function banner(text) {
  const b = $('banner');
  b.hidden = !text;
  setText(b, text || '');
}

// notice writes the outcome of an action at the top of a panel.
function notice(panel, text, isError) {
  const sec = $(panel);
  let p = sec.querySelector(':scope > .notice');
  if (!p) {
    p = document.createElement('p');
    p.className = 'notice';
    sec.querySelector(':scope > h2').after(p);
  }
  p.hidden = false;
  p.classList.toggle('bad', !!isError);
  setText(p, text);
}

// ---- Panels ------------------------------------------------------------------------------

// Panels whose endpoint a server may not have (404): they are hidden with a note.
const OPTIONAL = new Set(['charts', 'topics', 'relays', 'pauses', 'inboxes']);
const unavailable = new Set();

function panelState(id, state, error) {
  const sec = $(id);
  sec.dataset.state = state;
  const err = sec.querySelector(':scope > .error');
  if (err) {
    err.hidden = !error;
    setText(err, error || '');
  }
  const note = sec.querySelector(':scope > .unavailable');
  if (note) note.hidden = state !== 'unavailable';
  const body = sec.querySelector(':scope > .body');
  if (body) body.hidden = state === 'unavailable';
}

async function load(id, path, render) {
  if (unavailable.has(id)) return;
  try {
    render(await api(path));
    panelState(id, 'ready');
  } catch (e) {
    if (e.status === 404 && OPTIONAL.has(id)) {
      unavailable.add(id);
      panelState(id, 'unavailable');
      if (id === 'pauses') $('topics').classList.add('no-pauses');
      return;
    }
    panelState(id, 'error', e.message);
  }
}

let sourceKind = '';

function renderStatus(st) {
  banner('');
  setText($('table'), st.table || '(unnamed)');
  const badge = $('ready-badge');
  setText(badge, st.ready_ok ? 'ready' : 'not ready');
  badge.className = 'badge ' + (st.ready_ok ? 'ok' : 'bad');
  setText($('version'), st.version ? 'version ' + st.version : '');
  setText($('uptime'), 'up ' + fmtSeconds(st.uptime_seconds));
  setText($('v-backlog'), fmtCount(st.backlog));
  setText($('v-ready'), fmtCount(st.ready));
  setText($('v-retrying'), fmtCount(st.retrying));
  setText($('v-oldest'), fmtSeconds(st.oldest_unpublished_seconds));
  setText($('v-dead'), fmtCount(st.dead_letters));
  setText($('v-relays'), fmtCount(st.live_relays));
  setText($('v-dups'), fmtCount(st.broker_duplicates));
  $('v-dead').parentElement.classList.toggle('warn', st.dead_letters > 0);
  $('v-retrying').parentElement.classList.toggle('warn', st.retrying > 0);

  syncRows($('checks'), st.checks || [], c => c.name, (tr, c) => cells(tr, [
    c.name, {text: c.ok ? 'ok' : 'failing', cls: c.ok ? 'ok' : 'bad'}, {text: c.reason || '', cls: 'err'}]), 'no checks');

  const src = st.source;
  if (!src) {
    facts($('source'), [['Source', 'not reported by this server']]);
  } else {
    const f = [];
    if (sourceKind) f.push(['Kind', sourceKind]);
    f.push(['Connected', src.connected ? 'yes' : 'no', src.connected ? 'ok' : 'bad']);
    if (src.standby) f.push(['Standby', 'yes (another relay reads)']);
    f.push(['WAL retained', src.wal_retained_bytes != null ? fmtBytes(src.wal_retained_bytes) : 'n/a (no replication slot)']);
    if (src.partitions) f.push(['Partitions owned', fmtCount(src.owned_partitions || 0) + ' of ' + fmtCount(src.partitions)]);
    if (src.claims || src.claim_errors) {
      f.push(['Claims', fmtCount(src.claims || 0) + ' (' + fmtCount(src.empty_claims || 0) + ' empty, ' +
        fmtCount(src.claim_errors || 0) + ' failed)', src.claim_errors ? 'warn' : '']);
    }
    if (src.pending) f.push(['Read, not finished', fmtCount(src.pending)]);
    facts($('source'), f);
  }

  syncRows($('paused-sinks'), st.paused_sinks || [], p => p.name, (tr, p) => cells(tr, [
    {text: p.name, cls: 'mono'}, {text: fmtTime(p.since), cls: 'time'}, {text: fmtCount(p.failed_probes), cls: 'num'}, {text: fmtTime(p.next_probe), cls: 'time'},
    {text: p.error, cls: 'err', title: p.error}]), 'none: every sink takes messages');

  syncRows($('failing-topics'), st.failing_topics || [], t => t.topic, (tr, t) => cells(tr, [
    {text: t.topic, cls: 'mono'}, {text: fmtCount(t.failing), cls: 'num'}, {text: t.last_error, cls: 'err', title: t.last_error}]),
  'none');
}

const charts = {};

function makeCharts() {
  charts.backlog = new LineChart($('chart-backlog'), [{name: 'backlog'}], v => fmtCount(Math.round(v)));
  charts.oldest = new LineChart($('chart-oldest'), [{name: 'oldest'}], fmtSeconds);
  charts.throughput = new LineChart($('chart-throughput'),
    [{name: 'published/s'}, {name: 'retried/s'}, {name: 'dead-lettered/s'}], fmtRate);
  charts.latency = new LineChart($('chart-latency'), [{name: 'p50'}, {name: 'p99'}], fmtSeconds);
}

function renderHistory(h) {
  const samples = h.samples || [];
  const times = samples.map(s => Date.parse(s.time));
  const t1 = times.length ? times[times.length - 1] : Date.now();
  let t0 = times.length ? Math.max(times[0], t1 - HOUR_MS) : t1 - 60000;
  if (t1 - t0 < 60000) t0 = t1 - 60000; // the first minute grows from the right
  const col = f => samples.map(f);
  charts.backlog.update(times, [col(s => s.backlog)], t0, t1);
  charts.oldest.update(times, [col(s => s.oldest_unpublished_seconds)], t0, t1);
  charts.throughput.update(times, [col(s => s.published_per_second), col(s => s.retried_per_second),
    col(s => s.dead_lettered_per_second)], t0, t1);
  charts.latency.update(times, [col(s => s.latency_p50_seconds ?? null), col(s => s.latency_p99_seconds ?? null)], t0, t1);
  const last = samples[samples.length - 1];
  setText($('v-rate'), last ? fmtRate(last.published_per_second) : '–');
  setText($('history-span'), samples.length ? 'last ' + fmtSeconds((t1 - Math.max(times[0], t1 - HOUR_MS)) / 1000) +
    ', a sample every ' + fmtSeconds(h.interval_seconds) : 'no samples yet');
}

function renderTopics(d) {
  const list = d.topics || [];
  setText($('topics-note'), d.truncated ? 'the first ' + list.length + ' shown' : '');
  syncRows($('topics-rows'), list, t => t.topic, (tr, t) => cells(tr, [
    {text: t.topic, cls: 'mono'}, {text: fmtCount(t.pending), cls: 'num'}, {text: fmtCount(t.ready), cls: 'num'},
    {text: fmtCount(t.retrying), cls: 'num'}, {text: fmtSeconds(t.oldest_unpublished_seconds), cls: 'num'},
    {text: fmtCount(t.dead_letters), cls: 'num' + (t.dead_letters > 0 ? ' warn' : '')},
    {text: t.last_error || '', cls: 'err', title: t.last_error || ''},
    {text: t.paused ? 'paused' : '', cls: t.paused ? 'bad' : ''},
    td => {
      if (unavailable.has('pauses')) {
        td.replaceChildren();
        return;
      }
      const label = t.paused ? 'Resume' : 'Pause';
      let b = td.firstChild;
      if (!b) {
        b = button(label, 'secondary small', () => {
          const cur = tr.item;
          if (cur.paused) resume('topic', cur.topic);
          else pauseAsk('topic', cur.topic);
        });
        td.append(b);
      }
      setText(b, label);
    }]), 'no topic has unpublished messages or dead letters');
}

// fixedPart is the longest stretch of a normalised error that no placeholder replaced: a
// substring of every raw error of the group, for the API's error filter.
function fixedPart(normalised) {
  return normalised.split(/<(?:id|value|hex|n)>/).reduce((a, b) => (b.length > a.length ? b : a), '');
}

function renderGroups(d) {
  const groups = d.groups || [];
  const total = groups.reduce((n, g) => n + g.count, 0);
  setText($('dead-note'), groups.length ? fmtCount(total) + ' in ' + fmtCount(groups.length) + (groups.length === 1 ? ' group' : ' groups') +
    (d.truncated ? ' (of the first 100,000 read)' : '') : '');
  syncRows($('dead-groups'), groups, g => g.topic + '\u0000' + g.error, (tr, g) => cells(tr, [
    {text: g.topic, cls: 'mono topic'},
    td => {
      if (!td.firstChild) {
        td.className = 'group-error';
        const norm = document.createElement('div');
        norm.className = 'mono';
        const sample = document.createElement('div');
        sample.className = 'sample';
        td.append(norm, sample);
      }
      setText(td.firstChild, g.error);
      setText(td.lastChild, 'latest: ' + g.sample_error);
    },
    {text: fmtCount(g.count), cls: 'num'},
    {text: fmtTime(g.first_failed_at), cls: 'time'}, {text: fmtTime(g.last_failed_at), cls: 'time'},
    td => {
      if (td.firstChild) return;
      td.className = 'actions';
      td.append(button('Retry', 'small retry', () => deadAction('retry', tr.item)),
        button('Purge', 'small danger purge', () => deadAction('purge', tr.item)));
    }]), 'none: every message was delivered or is still being tried');
}

async function deadAction(verb, g) {
  const exact = Array.isArray(g.ids) && g.ids.length === g.count;
  const frag = fixedPart(g.error);
  const sel = exact ? {ids: g.ids} : {filter: frag ? {topic: g.topic, error: frag} : {topic: g.topic}};
  const path = 'api/v1/dead-letters/' + verb;
  try {
    const dry = await api(path, {method: 'POST', body: {...sel, dry_run: true}});
    const n = dry.matched;
    if (n === 0) {
      notice('dead-letters', 'Nothing to ' + verb + ': the group’s dead letters are gone.');
      return;
    }
    const plural = n === 1 ? 'dead letter' : 'dead letters';
    const text = verb === 'retry'
      ? `Move ${fmtCount(n)} ${plural} of topic “${g.topic}” back into the outbox? The relay publishes them again, their attempts reset.`
      : `Delete ${fmtCount(n)} ${plural} of topic “${g.topic}” for good? They are not published.`;
    const warning = !exact && n !== g.count
      ? `The group counts ${fmtCount(g.count)}; the filter (topic, and the error containing “${frag}”) selects ${fmtCount(n)}.`
      : '';
    const ok = await confirmDialog({title: (verb === 'retry' ? 'Retry ' : 'Purge ') + plural, text, warning,
      ok: (verb === 'retry' ? 'Retry ' : 'Purge ') + fmtCount(n)});
    if (!ok.ok) return;
    const res = await api(path, {method: 'POST', body: sel});
    notice('dead-letters', `${verb === 'retry' ? 'Retried' : 'Purged'} ${fmtCount(res.done)} of ${fmtCount(res.matched)} ${plural} of topic “${g.topic}”.`);
    refreshNow();
  } catch (e) {
    notice('dead-letters', verb + ' failed: ' + e.message, true);
  }
}

function renderRelays(d) {
  sourceKind = (d.source && d.source.kind) || '';
  const ttl = d.ttl_seconds;
  setText($('relays-note'), ttl ? 'a relay is live while its heartbeat is younger than ' + fmtSeconds(ttl) : '');
  syncRows($('relays-rows'), d.relays || [], r => r.id, (tr, r) => cells(tr, [
    td => {
      td.className = 'mono';
      setText(td, r.id);
      if (r.self) {
        const b = document.createElement('span');
        b.className = 'badge ok small';
        b.textContent = 'this relay';
        td.append(' ', b);
      }
    },
    {text: r.group || '(default)', cls: r.group ? 'mono' : 'muted'},
    {text: fmtSeconds(r.heartbeat_age_seconds) + ' ago', cls: 'num' + (ttl && r.heartbeat_age_seconds > ttl ? ' bad' : '')},
    td => partitionCell(td, r.partition, r.partitions)]), 'no live relay');
}

// partitionCell draws the key space cut into n slices, the relay's slice filled.
function partitionCell(td, p, n) {
  const key = p + '/' + n;
  if (td.dataset.slice === key) return;
  td.dataset.slice = key;
  const NS = 'http://www.w3.org/2000/svg';
  const w = 120;
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('width', w);
  svg.setAttribute('height', 12);
  svg.setAttribute('class', 'slices');
  const count = Math.max(1, n || 1);
  for (let i = 0; i < count; i++) {
    const r = document.createElementNS(NS, 'rect');
    r.setAttribute('x', (i * w / count + 0.5).toFixed(1));
    r.setAttribute('y', 0.5);
    r.setAttribute('width', Math.max(1, w / count - 1).toFixed(1));
    r.setAttribute('height', 11);
    r.setAttribute('class', i === p ? 'own' : 'other');
    svg.append(r);
  }
  const label = document.createElement('span');
  label.textContent = n ? ` slice ${p + 1} of ${n}` : ' no slice';
  td.className = 'slices-cell';
  td.replaceChildren(svg, label);
}

function renderPauses(d) {
  syncRows($('pauses-rows'), d.pauses || [], p => p.kind + '\u0000' + p.name, (tr, p) => cells(tr, [
    p.kind, {text: p.name, cls: 'mono'}, {text: fmtTime(p.since), cls: 'time', title: p.paused_by ? 'by ' + p.paused_by : ''},
    {text: p.reason || '', cls: 'err', title: p.reason || ''},
    td => {
      if (td.firstChild) return;
      td.append(button('Resume', 'secondary small', () => resume(tr.item.kind, tr.item.name)));
    }]), 'nothing is paused');
}

async function pauseAsk(kind, name) {
  const ok = await confirmDialog({title: `Pause ${kind} “${name}”?`,
    text: `Every relay of this table holds the messages ${kind === 'sink' ? 'routed to this sink' : 'of this topic'} until it is resumed ` +
      '(each relay sees a pause or a resume within its pause interval, 2s by default). Nothing is dropped and no attempt is spent.',
    ok: 'Pause', input: true});
  if (ok.ok) await pause(kind, name, ok.value);
}

async function pause(kind, name, reason) {
  try {
    await api('api/v1/pauses', {method: 'POST', body: {kind, name, reason}});
    notice('pauses', `Paused ${kind} “${name}”.`);
    refreshNow();
  } catch (e) {
    notice('pauses', 'pause failed: ' + e.message, true);
  }
}

async function resume(kind, name) {
  try {
    await api('api/v1/pauses/' + encodeURIComponent(kind) + '/' + encodeURIComponent(name), {method: 'DELETE'});
    notice('pauses', `Resumed ${kind} “${name}”.`);
    refreshNow();
  } catch (e) {
    notice('pauses', 'resume failed: ' + e.message, true);
  }
}

function renderInboxes(d) {
  syncRows($('inboxes-rows'), d.inboxes || [], i => i.consumer + '\u0000' + i.table, (tr, i) => cells(tr, [
    {text: i.consumer, cls: 'mono'}, {text: i.table, cls: 'mono'}, {text: fmtCount(i.processed), cls: 'num'},
    i.last_processed_at ? fmtTime(i.last_processed_at) : 'never',
    {text: fmtCount(i.dead_letters), cls: 'num' + (i.dead_letters > 0 ? ' warn' : '')}]), 'no inbox consumer recorded');
}

// ---- Polling -----------------------------------------------------------------------------

const PANELS = ['overview', 'charts', 'topics', 'dead-letters', 'relays', 'pauses', 'inboxes'];

async function tick() {
  await load('relays', 'api/v1/relays', renderRelays); // first: the status shows its source kind
  await Promise.all([
    load('overview', 'api/v1/status', renderStatus),
    load('charts', 'api/v1/history', renderHistory),
    load('topics', 'api/v1/topics', renderTopics),
    load('dead-letters', 'api/v1/dead-letters/groups', renderGroups),
    load('pauses', 'api/v1/pauses', renderPauses),
    load('inboxes', 'api/v1/inboxes', renderInboxes),
  ]);
  const d = new Date();
  setText($('updated'), 'updated ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()));
  if (!document.body.dataset.loaded && PANELS.every(id => ['ready', 'unavailable'].includes($(id).dataset.state))) {
    document.body.dataset.loaded = 'true';
    performance.mark('dashboard-filled');
  }
}

let timer = null;
let running = false;
let again = false;

async function loop() {
  timer = null;
  if (document.hidden) return; // visibilitychange starts it again
  if (running) {
    again = true;
    return;
  }
  running = true;
  try {
    await tick();
  } finally {
    running = false;
  }
  if (again) {
    again = false;
    loop();
  } else if (!document.hidden && !timer) {
    timer = setTimeout(loop, POLL_MS);
  }
}

// refreshNow reads everything again at once (after a change).
function refreshNow() {
  if (timer) {
    clearTimeout(timer);
    timer = null;
  }
  loop();
}

function start() {
  makeCharts();
  $('token-button').addEventListener('click', async () => {
    auth.refused = false;
    if (await askToken(auth.token ? 'Replace the token this tab uses.' : 'Give the read or the admin token.')) refreshNow();
  });
  $('pause-form').addEventListener('submit', ev => {
    ev.preventDefault();
    const name = $('pause-name').value.trim();
    if (!name) return;
    pause($('pause-kind').value, name, $('pause-reason').value.trim());
    $('pause-name').value = '';
    $('pause-reason').value = '';
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && !timer) loop();
  });
  let width = window.innerWidth;
  window.addEventListener('resize', () => {
    if (window.innerWidth === width) return;
    width = window.innerWidth;
    for (const c of Object.values(charts)) c.draw();
  });
  loop();
}

start();
