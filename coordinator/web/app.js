// The coordinator's page: jobs, one job's curves and events, and the workers, read from the coordinator's JSON API
// (api/me, api/jobs, api/job?id=, api/workers) every few seconds. Charts are SVG drawn here; nothing is fetched from
// anywhere but this coordinator. Text from the API only ever goes into the page as text (textContent), never as HTML.
'use strict';

const REFRESH_MS = 2000;
const GROUP_ORDER = ['train', 'reward', 'objective', 'task', 'eval', 'policy', 'value', 'rollout', 'weights', 'time'];
const SVG_NS = 'http://www.w3.org/2000/svg';
let selectedJob = new URLSearchParams(location.search).get('job');

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

async function api(path) {
  const r = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  if (r.status === 401) throw Object.assign(new Error('signed out'), { status: 401 });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(body.error || r.statusText), { status: r.status });
  return body;
}

// A token in the fragment (#token=...) signs in without a form; the fragment never reaches a server log, and is
// removed from the address bar at once.
async function signInFromFragment() {
  const m = location.hash.match(/(?:^#|&)token=([^&]*)/);
  if (!m) return;
  history.replaceState(null, '', location.pathname + location.search);
  const r = await fetch('login', {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: 'token=' + m[1],
  });
  if (!r.ok) $('login-error').textContent = 'That token was not accepted.';
}

function fmtNum(v) {
  if (!isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

function fmtTime(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  return d.toLocaleString();
}

function stateCell(state) {
  const s = String(state || '').replace('JOB_STATE_', '');
  return el('td', { class: 'state state-' + s }, s);
}

function progressCell(job) {
  const step = Number(job.step || 0), total = Number(job.totalSteps || 0);
  const td = el('td');
  if (total > 0) {
    const bar = el('span', { class: 'bar' }, el('span', { style: 'width:' + Math.min(100, 100 * step / total) + '%' }));
    td.append(bar, `${step}/${total}`);
  } else {
    td.append(String(step));
  }
  return td;
}

function renderJobs(jobs) {
  const rows = $('job-rows');
  rows.replaceChildren();
  for (const j of jobs) {
    const link = el('a', { href: '?job=' + encodeURIComponent(j.id) }, j.id);
    link.addEventListener('click', (e) => {
      e.preventDefault();
      selectedJob = j.id;
      history.replaceState(null, '', '?job=' + encodeURIComponent(j.id));
      refresh();
    });
    const tr = el('tr', { class: j.id === selectedJob ? 'selected' : '' },
      el('td', {}, link), el('td', {}, j.name || ''), el('td', {}, j.owner || ''), stateCell(j.state),
      progressCell(j), el('td', {}, j.attempt || 0), el('td', {}, fmtTime(j.updatedUnixMs)),
      el('td', {}, j.message || ''));
    rows.append(tr);
  }
  $('jobs').hidden = false;
}

// One chart: the series' points [[step, value], ...] as a polyline, with the value range on the left and the first
// and last step below.
function chart(name, points) {
  const W = 280, H = 110, L = 58, R = 8, T = 6, B = 18;
  const finite = points.filter((p) => isFinite(p[1]));
  const box = el('div', { class: 'chart' });
  const last = finite.length ? finite[finite.length - 1] : null;
  box.append(el('div', { class: 'head' }, el('span', { class: 'name', title: name }, name),
                el('span', { class: 'last' }, last ? `step ${last[0]}: ${fmtNum(last[1])}` : 'no points')));
  const s = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'data-metric': name,
                         'data-points': String(finite.length) });
  s.append(svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
           svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
  if (finite.length) {
    let x0 = finite[0][0], x1 = last[0];
    let y0 = Math.min(...finite.map((p) => p[1])), y1 = Math.max(...finite.map((p) => p[1]));
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const px = (x) => L + (W - L - R) * (x - x0) / (x1 - x0);
    const py = (y) => T + (H - T - B) * (1 - (y - y0) / (y1 - y0));
    const coords = finite.map((p) => px(p[0]).toFixed(1) + ',' + py(p[1]).toFixed(1)).join(' ');
    s.append(svg('polyline', { class: 'line', points: coords }));
    if (finite.length === 1) s.append(svg('circle', { cx: px(x0), cy: py(finite[0][1]), r: 2.5, fill: '#2563eb' }));
    s.append(svg('text', { x: L - 4, y: T + 9, 'text-anchor': 'end' }, fmtNum(y1)),
             svg('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, fmtNum(y0)),
             svg('text', { x: L, y: H - 4, 'text-anchor': 'start' }, String(finite[0][0])),
             svg('text', { x: W - R, y: H - 4, 'text-anchor': 'end' }, String(last[0])));
  }
  box.append(s);
  return box;
}

function groupOf(name) {
  const slash = name.indexOf('/');
  return slash < 0 ? 'other' : name.slice(0, slash);
}

function renderJob(detail) {
  const j = detail.job;
  $('job-title').textContent = `${j.id}${j.name ? ' — ' + j.name : ''}`;
  const state = String(j.state || '').replace('JOB_STATE_', '');
  $('job-summary').textContent =
    `${state}, step ${j.step || 0}${j.totalSteps ? ' of ' + j.totalSteps : ''}, attempt ${j.attempt || 0}, ` +
    `owner ${j.owner || ''}` + (detail.downsampled ? ' (long series drawn at every n-th step)' : '');
  const groups = new Map();
  for (const name of Object.keys(detail.series).sort()) {
    const g = groupOf(name);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(name);
  }
  const rank = (g) => { const i = GROUP_ORDER.indexOf(g); return i < 0 ? GROUP_ORDER.length : i; };
  const charts = $('charts');
  charts.replaceChildren();
  for (const g of [...groups.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))) {
    const grid = el('div', { class: 'grid' });
    for (const name of groups.get(g)) grid.append(chart(name, detail.series[name]));
    charts.append(el('div', { class: 'group' }, el('h3', {}, g), grid));
  }
  if (!groups.size) charts.append(el('p', { class: 'muted' }, 'No steps reported yet.'));
  const rows = $('event-rows');
  rows.replaceChildren();
  for (const e of detail.events) {
    rows.append(el('tr', {}, el('td', {}, fmtTime(e.unixMs)), stateCell(e.state), el('td', {}, e.attempt || 0),
                   el('td', {}, e.step || ''), el('td', {}, e.message || '')));
  }
  $('job').hidden = false;
}

function renderWorkers(workers) {
  const rows = $('worker-rows');
  rows.replaceChildren();
  for (const w of workers) {
    const roles = (w.roles || []).map((r) => r.replace('ROLE_', '').toLowerCase()).join(', ');
    const device = String(w.device || '').replace('DEVICE_KIND_', '').toLowerCase() +
                   (w.deviceCount ? ' ×' + w.deviceCount : '');
    rows.append(el('tr', {}, el('td', {}, w.id), el('td', {}, roles), el('td', {}, device),
                   el('td', {}, w.address || ''), el('td', {}, `${Number(w.leaseRemainingS).toFixed(1)} s`),
                   el('td', {}, w.job || '—'),
                   el('td', {}, (w.assignedRole || '').replace('ROLE_', '').toLowerCase())));
  }
  $('workers').hidden = false;
}

function showLogin() {
  for (const id of ['jobs', 'job', 'workers', 'logout']) $(id).hidden = true;
  $('login').hidden = false;
  $('who').textContent = '';
  if (new URLSearchParams(location.search).get('login') === 'failed') {
    $('login-error').textContent = 'That token was not accepted.';
  }
}

async function refresh() {
  try {
    const me = await api('api/me');
    $('login').hidden = true;
    $('who').textContent = `${me.name} (${me.role})`;
    $('logout').hidden = !me.session;
    const jobs = (await api('api/jobs')).jobs;
    if (!selectedJob && jobs.length) {
      const running = jobs.filter((j) => j.state === 'JOB_STATE_RUNNING');
      selectedJob = (running.length ? running[running.length - 1] : jobs[jobs.length - 1]).id;
    }
    renderJobs(jobs);
    if (selectedJob) renderJob(await api('api/job?id=' + encodeURIComponent(selectedJob)));
    renderWorkers((await api('api/workers')).workers);
    $('status').textContent = 'updated ' + new Date().toLocaleTimeString();
    document.body.dataset.loaded = 'true';
  } catch (e) {
    if (e.status === 401) showLogin();
    else $('status').textContent = 'error: ' + e.message;
  }
}

async function main() {
  await signInFromFragment();
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

main();
