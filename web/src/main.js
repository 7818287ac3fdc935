// The dashboard: reads the store through `mitmwatch serve`'s JSON API and
// redraws every 10 s, so a running monitor's rounds appear as they land.
import { Chart, LineController, LineElement, PointElement, LinearScale, Tooltip, Legend } from 'chart.js';

Chart.register(LineController, LineElement, PointElement, LinearScale, Tooltip, Legend);

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#17becf'];
const $ = (sel) => document.querySelector(sel);
const api = async (path) => {
  const res = await fetch(path, { cache: 'no-store' });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
};
const when = (ms) => (ms == null ? '-' : new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'));
const pct = (v) => `${(100 * v).toFixed(1)} %`;
const text = (v) => document.createTextNode(v == null ? '' : String(v));

function fillTable(id, rows, cells, decorate) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement('tr');
    for (const c of cells(row)) {
      const td = document.createElement('td');
      td.append(text(c));
      tr.append(td);
    }
    if (decorate) decorate(tr, row);
    body.append(tr);
  }
}

// Stretches with no interception between rounds that had some: what a
// researcher looks for first ("stopped ... resumed 9 hours later").
export function offPeriods(points) {
  const byVantage = new Map();
  for (const p of points) {
    if (!byVantage.has(p.vantage)) byVantage.set(p.vantage, []);
    byVantage.get(p.vantage).push(p);
  }
  const out = [];
  for (const [vantage, ps] of byVantage) {
    let seenOn = false;
    let start = null;
    for (const p of ps) {
      if (p.judged === 0) continue;
      if (p.intercepted === 0 && seenOn && start == null) start = p;
      if (p.intercepted > 0) {
        if (start) out.push({ vantage, from: start.at_ms, to: p.at_ms, rounds: ps.filter((q) => q.at_ms >= start.at_ms && q.at_ms < p.at_ms).length });
        start = null;
        seenOn = true;
      }
    }
    if (start) out.push({ vantage, from: start.at_ms, to: null, rounds: ps.filter((q) => q.at_ms >= start.at_ms).length });
  }
  return out;
}

// Event times as dashed vertical lines.
const eventLines = {
  id: 'eventLines',
  afterDatasetsDraw(chart, _args, opts) {
    const { ctx, chartArea, scales } = chart;
    ctx.save();
    for (const e of opts.events || []) {
      const x = scales.x.getPixelForValue(e.at_ms);
      if (x < chartArea.left || x > chartArea.right) continue;
      ctx.strokeStyle = e.type === 'interception-stopped' ? '#d62728' : '#1f77b4';
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(x, chartArea.top);
      ctx.lineTo(x, chartArea.bottom);
      ctx.stroke();
    }
    ctx.restore();
  },
};

let chart = null;
function drawChart(points, events) {
  const byVantage = new Map();
  for (const p of points) {
    if (!byVantage.has(p.vantage)) byVantage.set(p.vantage, []);
    byVantage.get(p.vantage).push({ x: p.at_ms, y: 100 * p.share, run: p.run_id });
  }
  const datasets = [...byVantage].map(([vantage, data], i) => ({
    label: vantage, data, borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length],
    tension: 0, pointRadius: 3,
  }));
  if (chart) {
    chart.data.datasets = datasets;
    chart.options.plugins.eventLines.events = events;
    chart.update('none');
    return;
  }
  chart = new Chart($('#share-chart'), {
    type: 'line',
    data: { datasets },
    plugins: [eventLines],
    options: {
      animation: false, maintainAspectRatio: false, parsing: true,
      scales: {
        x: { type: 'linear', ticks: { callback: (v) => when(v).slice(11) , maxTicksLimit: 8 } },
        y: { min: 0, max: 100, title: { display: true, text: '% intercepted' } },
      },
      plugins: {
        eventLines: { events },
        tooltip: { callbacks: { title: (items) => when(items[0].parsed.x), label: (i) => `${i.dataset.label}: ${i.parsed.y.toFixed(1)} %` } },
      },
    },
  });
  window.mitmwatchChart = chart;  // for tests and the curious: the plotted data
}

async function showCertDiff(event) {
  const id = event.details?.example?.record_id;
  const panel = $('#certdiff');
  panel.hidden = false;
  $('#certdiff-what').textContent = id == null ? 'This event names no intercepted record.' : `loading record ${id}…`;
  $('#certdiff-table tbody').replaceChildren();
  if (id == null) return;
  try {
    const p = await api(`/api/certpair?record=${id}`);
    const d = p.diff;
    $('#certdiff-what').textContent = `${p.target}, SNI ${p.sni} (record ${p.record_id}, run ${p.run_id}), for event: ${event.type}`;
    const key = (k) => `${k.algorithm} ${k.bits}${k.rsa_exponent != null ? ` e=${k.rsa_exponent}` : ''}`;
    const real = d.real_chain.certificates[0];
    const forged = d.forged_chain.certificates[0];
    const rows = [
      ['subject', d.subject.real, d.subject.forged, !d.subject.equal],
      ['issuer', real.issuer, forged.issuer, real.issuer !== forged.issuer],
      ['names only in one', d.subject_alt_names.only_real.join(', '), d.subject_alt_names.only_forged.join(', '), !d.subject_alt_names.equal],
      ['key', key(d.key.real), key(d.key.forged), d.key.replaced],
      ['not before', when(real.not_before * 1000), when(forged.not_before * 1000), d.validity.not_before_shift !== 0],
      ['not after', when(real.not_after * 1000), when(forged.not_after * 1000), d.validity.not_after_shift !== 0],
      ['serial', d.serial.real, d.serial.forged, d.serial.real !== d.serial.forged],
      ['signature', d.signature_algorithm.real, d.signature_algorithm.forged, d.signature_algorithm.real !== d.signature_algorithm.forged],
      ['extensions dropped', '', d.extensions.dropped.map((e) => e.name).join(', '), d.extensions.dropped.length > 0],
      ['chain trusted', String(d.real_chain.trusted), String(d.forged_chain.trusted), d.real_chain.trusted !== d.forged_chain.trusted],
      ['shape', d.shape.real, d.shape.forged, d.shape.real !== d.shape.forged],
    ];
    fillTable('certdiff-table', rows, (r) => r.slice(0, 3), (tr, r) => { if (r[3]) tr.className = 'differs'; });
    const lints = $('#certdiff-lints');
    lints.replaceChildren(...d.forged_lints.map((l) => { const li = document.createElement('li'); li.textContent = l; return li; }));
    $('#real-pem').textContent = p.real_pem;
    $('#forged-pem').textContent = p.forged_pem;
  } catch (e) {
    $('#certdiff-what').textContent = `No diff for record ${id}: ${e.message}`;
  }
}

async function refresh() {
  const series = $('#series').value;
  const q = series ? `?series=${encodeURIComponent(series)}` : '';
  const [overview, points, events, domains, servers, hops, issuers, compare] = await Promise.all([
    api('/api/overview'), api(`/api/series${q}`), api(`/api/events${q}`), api('/api/domains'), api('/api/servers'),
    api('/api/hops'), api('/api/issuers'), api('/api/compare'),
  ]);
  $('#overview').textContent = `${overview.runs} runs · ${overview.records} records · ${overview.certificates} certificates · ${overview.events} events · vantages: ${overview.vantages.join(', ') || 'none'}`;
  const select = $('#series');
  const known = new Set([...select.options].map((o) => o.value));
  for (const s of overview.series) if (!known.has(s)) select.append(new Option(s, s));
  drawChart(points, events);
  const off = offPeriods(points);
  $('#off-periods').replaceChildren(...(off.length ? off : [null]).map((o) => {
    const li = document.createElement('li');
    li.textContent = o ? `${o.vantage}: from ${when(o.from)} to ${o.to ? when(o.to) : 'now'} (${o.rounds} rounds)` : 'none';
    if (o) li.className = 'off-period';
    return li;
  }));
  fillTable('events', events, (e) => [when(e.at_ms), e.vantage, e.type, e.subject], (tr, e) => {
    tr.className = `event ${e.type.replace('interception-', '')}`;
    tr.dataset.testid = 'event-row';
    tr.title = 'Show the real and forged certificates';
    tr.addEventListener('click', () => showCertDiff(e));
  });
  fillTable('vantages', compare.vantages, (v) => [v.vantage, v.runs, pct(v.share), `${v.hosts_intercepted} of ${v.hosts}`,
    v.injector_hops.map((h) => `${h.hop} (${h.traces})`).join(', ') || '-']);
  fillTable('vantage-diff', compare.intercepted_from_one_not_the_other,
    (d) => [d.intercepted_from, d.not_from, d.hosts, d.examples.slice(0, 5).join(', ')]);
  fillTable('domains', domains, (d) => [d.sni, d.vantage, d.records, d.intercepted, pct(d.share)]);
  fillTable('servers', servers, (s) => [s.target, s.vantage, s.records, s.intercepted, s.last_verdict]);
  fillTable('hops', hops, (h) => [h.before, h.after, h.count, pct(h.share)]);
  fillTable('issuers', issuers, (i) => [i.issuer, i.records]);
  document.body.dataset.loaded = 'true';
}

$('#series').addEventListener('change', () => refresh());
$('#close-diff').addEventListener('click', () => { $('#certdiff').hidden = true; });
refresh().catch((e) => { $('#overview').textContent = `error: ${e.message}`; });
setInterval(() => refresh().catch(() => {}), 10000);
