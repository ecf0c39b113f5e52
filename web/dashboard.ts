/**
 * The aggregator's live dashboard (served at `/`). Everything arrives over the read-only socket.io namespace
 * `/dashboard`: one `snapshot` on connect (and again after every reconnect, e.g. a server restart), then incremental
 * `round-start`, `upload`, `phase`, `round` and `clients` events. No polling: a local one-second tick only moves
 * relative times ("12 s ago", the deadline countdown, the timeline's "now" line).
 */
import uPlot from 'uplot';
import { taskAccuracy } from '../shared/metrics.ts';
import { io } from 'socket.io-client';
import type { ClientsUpdate, DashboardClient, DashboardSnapshot, Phase, RoundSummary, Timeline } from '../shared/dashboard-feed.ts';

// ---------------------------------------------------------------- state

interface ServerInfo {
  strategy?: string;
  student?: string;
  version?: string;
  backend?: { name?: string } | null;
  proxy?: { numClasses?: number; count?: number };
  config?: { rounds?: number; roundTimeoutS?: number };
  validation?: { count: number; rowsPerClass: number[] } | null;
}

type Conn = 'connecting' | 'live' | 'disconnected' | 'unauthorized';

const S = {
  server: {} as ServerInfo,
  status: null as ClientsUpdate | null,
  history: [] as RoundSummary[],
  timeline: null as Timeline | null,
  tasks: null as number[][] | null,
  /** Server clock minus ours, from the snapshot: relative times use the server's clock. */
  offset: 0,
  conn: 'connecting' as Conn,
};

export interface DashboardHooks {
  rounds: number[];
  studentAccuracy: (number | null)[];
  meanClientAccuracy: (number | null)[];
  clients: DashboardClient[];
  history: RoundSummary[];
  timeline: Timeline | null;
  tasks: { task: number; classes: number[]; accuracy: (number | null)[]; best: number | null; current: number | null; forgetting: number | null }[] | null;
  strategy: string | null;
  connection: Conn;
  /** Events received since the page loaded (snapshot included). */
  events: number;
}

declare global {
  interface Window {
    __dashboard?: DashboardHooks;
  }
}

const online = () => S.server.strategy === 'online';
const serverNow = () => Date.now() + S.offset;
let eventCount = 0;

// ---------------------------------------------------------------- formatting

const pct = (v: number | null | undefined, d = 2) => (v == null ? '—' : `${(v * 100).toFixed(d)}%`);
const fmtBytes = (n: number | null | undefined) =>
  n == null ? '—' : n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} KB` : `${n} B`;
const fmtSeconds = (s: number) => (s < 10 ? `${s.toFixed(1)} s` : s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);
const ago = (ms: number) => (ms < 1500 ? 'just now' : `${fmtSeconds(ms / 1000)} ago`);

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`dashboard: #${id} missing`);
  return el;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, cls?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// ---------------------------------------------------------------- derived data

const accOf = (r: RoundSummary) => (r.studentAccuracy == null ? null : r.studentAccuracy);

function taskSeries(): DashboardHooks['tasks'] {
  if (!S.tasks) return null;
  return S.tasks.map((classes, i) => {
    // The same rule as the simulator's continual report: classes weighted by their rows in the validation set.
    const rows = S.server.validation?.rowsPerClass;
    const accuracy = S.history.map((r) => {
      const pc = r.studentPerClassAccuracy;
      if (!pc || classes.length === 0) return null;
      const a = taskAccuracy(pc, classes, rows ?? pc.map(() => 1));
      return Number.isNaN(a) ? null : a;
    });
    const known = accuracy.filter((v): v is number => v !== null);
    const best = known.length ? Math.max(...known) : null;
    const current = known.length ? known[known.length - 1] : null;
    return { task: i + 1, classes, accuracy, best, current, forgetting: best !== null && current !== null ? best - current : null };
  });
}

function publishHooks(): void {
  window.__dashboard = {
    rounds: S.history.map((r) => r.round),
    studentAccuracy: S.history.map(accOf),
    meanClientAccuracy: S.history.map((r) => r.meanClientEvalAccuracy ?? null),
    clients: S.status?.clients ?? [],
    history: S.history,
    timeline: S.timeline,
    tasks: taskSeries(),
    strategy: S.server.strategy ?? null,
    connection: S.conn,
    events: eventCount,
  };
  const last = S.history.filter((r) => r.status === 'completed').at(-1);
  document.body.dataset.round = String(last?.round ?? 0);
  document.body.dataset.state = S.conn;
}

// ---------------------------------------------------------------- charts

const C = {
  blue: '#2563eb',
  green: '#16a34a',
  orange: '#ea580c',
  purple: '#7c3aed',
  gray: '#9aa3af',
  red: '#dc2626',
  axis: '#6b7380',
  grid: '#eef0f3',
};
/** For one line per class / task. */
const PALETTE = ['#2563eb', '#ea580c', '#16a34a', '#dc2626', '#7c3aed', '#0891b2', '#c026d3', '#65a30d', '#b45309', '#475569', '#db2777', '#0d9488'];
const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

function axis(o: Partial<uPlot.Axis> = {}): uPlot.Axis {
  return { stroke: C.axis, font: FONT, labelFont: FONT, grid: { stroke: C.grid, width: 1 }, ticks: { stroke: C.grid, width: 1, size: 4 }, ...o };
}

const pctAxis = (o: Partial<uPlot.Axis> = {}) => axis({ values: (_u, vs) => vs.map((v) => `${+v.toFixed(1)}%`), size: 48, ...o });
const intSplits = (_u: uPlot, _i: number, min: number, max: number) => {
  const span = max - min;
  const step = Math.max(1, Math.ceil(span / 10));
  const out: number[] = [];
  for (let v = Math.ceil(min); v <= max; v += step) out.push(v + 0); // + 0: no "-0" label
  return out;
};
const pctRange = (_u: uPlot, min: number | null, max: number | null): uPlot.Range.MinMax => {
  if (min == null || max == null) return [0, 100];
  const lo = Math.max(0, Math.floor((min - 2) / 10) * 10);
  const hi = Math.min(100, Math.ceil((max + 2) / 10) * 10);
  return [lo, Math.max(hi, lo + 10)];
};
const padRange = (_u: uPlot, min: number | null, max: number | null): uPlot.Range.MinMax => (min == null || max == null ? [0, 1] : [min - 0.6, max + 0.6]);
const decades = (_u: uPlot, min: number | null, max: number | null): uPlot.Range.MinMax =>
  min == null || max == null ? [1, 10] : [10 ** Math.floor(Math.log10(Math.max(1, min))), 10 ** Math.max(Math.floor(Math.log10(Math.max(1, min))) + 1, Math.ceil(Math.log10(Math.max(1, max))))];
const powersOf10 = (min: number, max: number) => {
  const out: number[] = [];
  for (let e = Math.round(Math.log10(Math.max(1, min))); 10 ** e <= max * 1.0001; e++) out.push(10 ** e);
  return out;
};
const roundRange = (_u: uPlot, min: number | null, max: number | null): uPlot.Range.MinMax =>
  min == null || max == null ? [0, 1] : min === max ? [min - 1, max + 1] : [min, max];

class Chart {
  private u: uPlot | null = null;
  private key = '';
  private readonly empty: HTMLElement | null;

  constructor(readonly box: HTMLElement) {
    this.empty = box.querySelector('.empty');
    new ResizeObserver(() => this.fit()).observe(box);
  }

  height(): number {
    return Number(this.box.dataset.height) || 220;
  }

  /** Plot `data`; a different `key` means different series, so the chart is rebuilt. null data shows the empty note. */
  show(key: string, data: uPlot.AlignedData | null, opts: (width: number, height: number) => uPlot.Options, emptyText?: string): void {
    if (!data) {
      this.u?.destroy();
      this.u = null;
      this.key = '';
      if (this.empty) {
        this.empty.hidden = false;
        if (emptyText) this.empty.textContent = emptyText;
      }
      return;
    }
    if (this.empty) this.empty.hidden = true;
    if (this.u && this.key === key) {
      if (this.u.height !== this.height()) this.u.setSize({ width: this.width(), height: this.height() });
      this.u.setData(data);
      return;
    }
    this.u?.destroy();
    this.key = key;
    this.u = new uPlot(opts(this.width(), this.height()), data, this.box);
  }

  redraw(): void {
    this.u?.redraw(false, false);
  }

  private width(): number {
    return Math.max(200, Math.floor(this.box.clientWidth));
  }

  private fit(): void {
    if (this.u && Math.abs(this.u.width - this.width()) > 1) this.u.setSize({ width: this.width(), height: this.height() });
  }
}

let charts: Record<'acc' | 'bytes' | 'timeline' | 'perClass' | 'tasks' | 'versions', Chart>;

function renderAccuracy(): void {
  const h = S.history;
  const xLabel = online() ? 'student version' : 'round';
  const student = h.map((r) => (r.studentAccuracy == null ? null : r.studentAccuracy * 100));
  const clients = h.map((r) => (r.meanClientEvalAccuracy == null ? null : r.meanClientEvalAccuracy * 100));
  const hasStudent = student.some((v) => v !== null);
  const hasClients = clients.some((v) => v !== null);
  if (!hasStudent && !hasClients) {
    return charts.acc.show('', null, () => ({}) as uPlot.Options, h.length ? 'no accuracy yet: the server has no labelled validation set and clients report none' : 'no completed round yet');
  }
  const series: uPlot.Series[] = [{ label: xLabel, value: (_u, v) => (v == null ? '—' : String(v)) }];
  const data: (number | null)[][] = [h.map((r) => r.round)];
  const pts = { show: h.length <= 60, size: 6 };
  const val = (_u: uPlot, v: number | null) => (v == null ? '—' : `${v.toFixed(2)}%`);
  if (hasStudent) {
    series.push({ label: 'student', stroke: C.blue, width: 2, points: pts, value: val, spanGaps: true });
    data.push(student);
  }
  if (hasClients) {
    series.push({ label: 'clients (mean, own test)', stroke: C.green, width: 1.5, dash: [6, 4], points: pts, value: val, spanGaps: true });
    data.push(clients);
  }
  charts.acc.show(`acc/${hasStudent}/${hasClients}/${pts.show}/${xLabel}`, data as uPlot.AlignedData, (width, height) => ({
    width,
    height,
    scales: { x: { time: false, range: roundRange }, y: { range: pctRange } },
    axes: [axis({ label: xLabel, labelSize: 18, splits: intSplits }), pctAxis()],
    series,
  }));
}

function renderBytes(): void {
  const h = S.history;
  if (!h.length) return charts.bytes.show('', null, () => ({}) as uPlot.Options);
  const bars = h.length <= 60;
  const b = uPlot.paths.bars!;
  const val = (_u: uPlot, v: number | null) => fmtBytes(v);
  const pos = (n: number) => (n > 0 ? n : null); // log scale
  charts.bytes.show(`bytes/${bars}`, [h.map((r) => r.round), h.map((r) => pos(r.uplinkBytes)), h.map((r) => pos(r.downlinkBytes))], (width, height) => ({
    width,
    height,
    // Log: the uplink (logits) is typically a small fraction of the downlink (a model), and both should be readable.
    scales: { x: { time: false, range: bars ? padRange : roundRange }, y: { distr: 3, log: 10, range: decades } },
    axes: [
      axis({ label: online() ? 'student version' : 'round', labelSize: 18, splits: intSplits }),
      axis({ splits: (u) => powersOf10(u.scales.y.min ?? 1, u.scales.y.max ?? 10), values: (_u, vs) => vs.map((v) => (v == null ? '' : fmtBytes(v))), size: 62 }),
    ],
    series: [
      { label: online() ? 'version' : 'round' },
      bars
        ? { label: 'uplink', fill: C.purple, stroke: C.purple, width: 0, paths: b({ size: [0.38, 40], align: -1 }), points: { show: false }, value: val }
        : { label: 'uplink', stroke: C.purple, width: 1.5, value: val },
      bars
        ? { label: 'downlink', fill: C.orange, stroke: C.orange, width: 0, paths: b({ size: [0.38, 40], align: 1 }), points: { show: false }, value: val }
        : { label: 'downlink', stroke: C.orange, width: 1.5, value: val },
    ],
  }));
}

function latestPerClass(): RoundSummary | undefined {
  return [...S.history].reverse().find((r) => r.studentPerClassAccuracy?.length);
}

function renderPerClass(): void {
  const r = latestPerClass();
  $('per-class-title').textContent = r ? `${online() ? 'version' : 'round'} ${r.round}` : 'latest round';
  if (!r) return charts.perClass.show('', null, () => ({}) as uPlot.Options, S.history.length ? 'no per-class accuracy: the server has no labelled validation set' : undefined);
  const pc = r.studentPerClassAccuracy!;
  charts.perClass.show(`pc/${pc.length}`, [pc.map((_, i) => i), pc.map((v) => v * 100)], (width, height) => ({
    width,
    height,
    legend: { show: false },
    scales: { x: { time: false, range: padRange }, y: { range: [0, 100] } },
    axes: [axis({ label: 'class', labelSize: 18, splits: (_u, _i, min, max) => intSplits(_u, _i, Math.max(0, min), max) }), pctAxis()],
    series: [{ label: 'class' }, { label: 'accuracy', fill: 'rgba(37, 99, 235, .75)', stroke: C.blue, width: 0, paths: uPlot.paths.bars!({ size: [0.7, 60] }), points: { show: false }, value: (_u, v) => (v == null ? '—' : `${v.toFixed(2)}%`) }],
  }));
}

function renderTasks(): void {
  const h = S.history;
  const tasks = taskSeries();
  const x = h.map((r) => r.round);
  const xLabel = online() ? 'student version' : 'round';
  const val = (_u: uPlot, v: number | null) => (v == null ? '—' : `${v.toFixed(1)}%`);
  const table = $('tasks-table') as HTMLTableElement;
  const note = $('tasks-note');
  if (tasks) {
    $('tasks-heading').textContent = 'Per-task accuracy and forgetting';
    note.textContent = 'Task accuracy = mean of its classes’ accuracy; forgetting = best seen − now.';
    table.hidden = false;
    const body = table.tBodies[0];
    body.replaceChildren(
      ...tasks.map((t) => {
        const tr = el('tr');
        tr.dataset.task = String(t.task);
        tr.append(el('td', `T${t.task}`, 'l'), el('td', `{${t.classes.join(', ')}}`, 'l'), el('td', pct(t.current, 1)), el('td', pct(t.best, 1)));
        const f = el('td', pct(t.forgetting, 1));
        if (t.forgetting !== null && t.forgetting > 0.1) f.className = 'bad-text';
        tr.append(f);
        return tr;
      }),
    );
    if (!h.some((r) => r.studentPerClassAccuracy)) return charts.tasks.show('', null, () => ({}) as uPlot.Options, 'no per-class accuracy yet');
    const data = [x, ...tasks.map((t) => t.accuracy.map((v) => (v == null ? null : v * 100)))];
    return charts.tasks.show(`tasks/${tasks.length}/${xLabel}`, data as uPlot.AlignedData, (width, height) => ({
      width,
      height,
      scales: { x: { time: false, range: roundRange }, y: { range: [0, 100] } },
      axes: [axis({ label: xLabel, labelSize: 18, splits: intSplits }), pctAxis()],
      series: [{ label: xLabel }, ...tasks.map((t, i) => ({ label: `T${t.task} {${t.classes.join(',')}}`, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true, value: val }))],
    }));
  }
  $('tasks-heading').textContent = 'Per-class accuracy over ' + (online() ? 'versions' : 'rounds');
  table.hidden = true;
  note.textContent = 'Per-task accuracy and forgetting appear when the server is given its tasks (fedistill server --tasks 0,1;2,3;…: groups of class indices; continual scenarios of fedistill simulate pass theirs).';
  const n = Math.max(0, ...h.map((r) => r.studentPerClassAccuracy?.length ?? 0));
  if (!n) return charts.tasks.show('', null, () => ({}) as uPlot.Options, h.length ? 'no per-class accuracy: the server has no labelled validation set' : 'no per-class accuracy yet');
  const data = [x, ...Array.from({ length: n }, (_, c) => h.map((r) => (r.studentPerClassAccuracy?.[c] == null ? null : r.studentPerClassAccuracy[c] * 100)))];
  charts.tasks.show(`classes/${n}/${xLabel}`, data as uPlot.AlignedData, (width, height) => ({
    width,
    height,
    scales: { x: { time: false, range: roundRange }, y: { range: [0, 100] } },
    axes: [axis({ label: xLabel, labelSize: 18, splits: intSplits }), pctAxis()],
    series: [{ label: xLabel }, ...Array.from({ length: n }, (_, c) => ({ label: `class ${c}`, stroke: PALETTE[c % PALETTE.length], width: 1.5, spanGaps: true, value: val }))],
  }));
}

function renderVersions(): void {
  const h = S.history.filter((r) => r.studentAccuracy != null);
  $('versions-heading').firstChild!.textContent = online() ? 'Student versions over time ' : 'Accuracy over wall-clock time ';
  if (!h.length) return charts.versions.show('', null, () => ({}) as uPlot.Options, S.history.length ? 'no student accuracy (no validation set)' : undefined);
  const t0 = S.history[0].startedAt;
  const label = online() ? 'version' : 'round';
  const xs = h.map((r) => (r.startedAt + r.seconds * 1000 - t0) / 1000);
  charts.versions.show(`versions/${label}`, [xs, h.map((r) => r.studentAccuracy! * 100), h.map((r) => r.round)], (width, height) => ({
    width,
    height,
    scales: { x: { time: false }, y: { range: pctRange }, n: { range: [0, 1] } },
    axes: [axis({ label: online() ? 's since the first version began' : 's since the first round began', labelSize: 18, values: (_u, vs) => vs.map((v) => fmtSeconds(v)) }), pctAxis()],
    series: [
      { label: 't', value: (_u, v) => (v == null ? '—' : `${v.toFixed(1)} s`) },
      { label: 'student', stroke: C.blue, width: 2, points: { show: h.length <= 80, size: 5 }, value: (_u, v) => (v == null ? '—' : `${v.toFixed(2)}%`) },
      // Carried for the legend only (which version/round a point is), drawn nowhere.
      { label, scale: 'n', show: true, stroke: 'transparent', width: 0, points: { show: false }, paths: () => null, value: (_u, v) => (v == null ? '—' : String(v)) },
    ],
  }));
}

// ---- the round timeline: x = seconds since the round (online: the version's window) opened, one lane per client

interface TimelineModel {
  lanes: string[];
  data: uPlot.AlignedData;
  hi: number;
  deadline: number | null;
  now: number | null;
  marks: { x: number; label: string }[];
}

let tl: TimelineModel | null = null;

function roundDone(t: Timeline): boolean {
  return t.events.some((e) => e.kind === 'done') || S.history.some((r) => r.round === t.round);
}

function timelineModel(t: Timeline): TimelineModel {
  const sec = (ms: number) => Math.max(0, (ms - t.openedAt) / 1000);
  const uploads = t.events.filter((e) => e.kind === 'upload');
  const ids = [...new Set([...t.selected, ...uploads.map((e) => e.clientId!)])].sort();
  const lanes = ['server', ...ids];
  const yOf = (lane: number) => lanes.length - 1 - lane; // the server on top
  const at = (k: Phase) => t.events.find((e) => e.kind === k)?.at;
  const done = roundDone(t);
  const now = done ? null : sec(serverNow());
  const lastEvent = Math.max(0, ...t.events.map((e) => sec(e.at)));
  const collectingEnd = at('closed') ?? at('evaluate') ?? null;
  // [x, series] points; series 1 uploads, 2 collecting, 3 aggregate, 4 evaluate
  const pts: { x: number; s: number; y: number }[] = [{ x: 0, s: 2, y: yOf(0) }];
  const marks: { x: number; label: string }[] = [{ x: 0, label: online() ? 'window' : 'open' }];
  if (collectingEnd !== null) {
    pts.push({ x: sec(collectingEnd), s: 2, y: yOf(0) });
    if (at('closed') !== undefined) marks.push({ x: sec(at('closed')!), label: 'closed' });
  } else if (now !== null) pts.push({ x: now, s: 2, y: yOf(0) });
  const agg = at('aggregate');
  const ev = at('evaluate');
  const fin = at('done');
  if (agg !== undefined) {
    pts.push({ x: sec(agg), s: 3, y: yOf(0) });
    marks.push({ x: sec(agg), label: 'aggregate' });
    pts.push({ x: sec(ev ?? fin ?? serverNow()), s: 3, y: yOf(0) });
  }
  if (ev !== undefined) {
    pts.push({ x: sec(ev), s: 4, y: yOf(0) });
    marks.push({ x: sec(ev), label: 'evaluate' });
    pts.push({ x: sec(fin ?? serverNow()), s: 4, y: yOf(0) });
  }
  if (fin !== undefined) marks.push({ x: sec(fin), label: 'done' });
  for (const u of uploads) pts.push({ x: sec(u.at), s: 1, y: yOf(lanes.indexOf(u.clientId!)) });
  pts.sort((a, b) => a.x - b.x || a.s - b.s);
  for (let i = 1; i < pts.length; i++) if (pts[i].x <= pts[i - 1].x) pts[i].x = pts[i - 1].x + 1e-6;
  const xs = pts.map((p) => p.x);
  const col = (s: number) => pts.map((p) => (p.s === s ? p.y : null));
  const span = Math.max(lastEvent, now ?? 0, ...xs, 1);
  let hi = span * 1.06;
  const deadline = t.deadline === null ? null : sec(t.deadline);
  if (deadline !== null && deadline <= span * 1.6) hi = Math.max(hi, deadline * 1.04);
  return { lanes, data: [xs, col(1), col(2), col(3), col(4)], hi, deadline, now, marks };
}

function drawTimeline(u: uPlot): void {
  const m = tl;
  if (!m) return;
  const ctx = u.ctx;
  const px = uPlot.pxRatio;
  const top = u.bbox.top;
  const bottom = u.bbox.top + u.bbox.height;
  const right = u.bbox.left + u.bbox.width;
  ctx.save();
  ctx.font = `${11 * px}px system-ui, sans-serif`;
  ctx.textBaseline = 'top';
  const vline = (x: number, color: string, dash: number[]) => {
    const cx = u.valToPos(x, 'x', true);
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5 * px;
    ctx.setLineDash(dash.map((d) => d * px));
    ctx.beginPath();
    ctx.moveTo(cx, top);
    ctx.lineTo(cx, bottom);
    ctx.stroke();
    ctx.setLineDash([]);
    return cx;
  };
  // A deadline far beyond what happened is named in the card's title instead of squeezing the chart.
  if (m.deadline !== null && m.deadline <= m.hi) {
    const cx = vline(m.deadline, C.red, [5, 4]);
    ctx.fillStyle = C.red;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'bottom';
    ctx.fillText('deadline', cx - 4 * px, bottom - 3 * px);
    ctx.textBaseline = 'top';
  }
  if (m.now !== null && m.now <= m.hi) {
    const cx = vline(m.now, C.blue, [2, 3]);
    ctx.fillStyle = C.blue;
    ctx.textAlign = 'left';
    ctx.fillText('now', cx + 4 * px, bottom - 15 * px);
  }
  // Phase labels just above the server lane; skip one that would overlap the previous.
  const ly = u.valToPos(m.lanes.length - 1, 'y', true) - 20 * px;
  ctx.fillStyle = '#374151';
  ctx.textAlign = 'center';
  let lastRight = -Infinity;
  for (const mk of [...m.marks].sort((a, b) => a.x - b.x)) {
    const cx = u.valToPos(mk.x, 'x', true);
    const w = ctx.measureText(mk.label).width;
    const x = Math.max(u.bbox.left + w / 2, Math.min(right - w / 2, cx));
    if (x - w / 2 < lastRight + 4 * px) continue;
    ctx.fillText(mk.label, x, Math.max(top + 2 * px, ly));
    lastRight = x + w / 2;
  }
  ctx.restore();
}

function renderTimeline(): void {
  const t = S.timeline;
  const title = $('timeline-title');
  if (!t) {
    tl = null;
    title.textContent = '—';
    return charts.timeline.show('', null, () => ({}) as uPlot.Options);
  }
  tl = timelineModel(t);
  const m = tl;
  const uploads = t.events.filter((e) => e.kind === 'upload').length;
  const sum = S.history.find((r) => r.round === t.round);
  const what = online() ? `v${t.round} window` : `round ${t.round}`;
  const left = t.deadline === null ? null : (t.deadline - serverNow()) / 1000;
  title.textContent = sum
    ? `${what} · ${sum.status === 'completed' ? 'completed' : sum.status} in ${fmtSeconds(sum.seconds)} · ${uploads}${t.selected.length ? `/${t.selected.length}` : ''} uploads` +
      (m.deadline !== null && m.deadline > m.hi ? ` · deadline was +${fmtSeconds(m.deadline)}` : '')
    : `${what} · in progress · ${uploads}${t.selected.length ? `/${t.selected.length}` : ''} uploads` +
      (left === null ? '' : ` · deadline ${left > 0 ? `in ${fmtSeconds(left)}` : 'passed'}`);
  charts.timeline.box.dataset.height = String(Math.min(440, Math.max(220, 86 + 26 * m.lanes.length)));
  const laneLabel = (v: number) => m.lanes[m.lanes.length - 1 - v] ?? '';
  const maxLabel = Math.max(...m.lanes.map((l) => l.length));
  charts.timeline.show(`timeline/${m.lanes.length}/${maxLabel}`, m.data, (width, height) => ({
    width,
    height,
    legend: { live: false },
    cursor: { drag: { x: true, y: false } },
    scales: {
      x: { time: false, range: () => [0, tl?.hi ?? 1] },
      y: { range: () => [-0.6, (tl?.lanes.length ?? 1) - 0.4] },
    },
    axes: [
      axis({ label: online() ? 'seconds since the window opened' : 'seconds since the round opened', labelSize: 18, values: (_u, vs) => vs.map((v) => `${+v.toFixed(2)}`) }),
      axis({
        size: Math.min(160, 18 + 6.6 * maxLabel),
        splits: () => (tl ? tl.lanes.map((_, i) => i) : []),
        values: (_u, vs) => vs.map((v) => (tl ? (tl.lanes[tl.lanes.length - 1 - v] ?? '') : laneLabel(v))),
        grid: { stroke: C.grid, width: 1, dash: [2, 3] },
      }),
    ],
    series: [
      { label: 's' },
      { label: 'upload', stroke: C.green, fill: C.green, width: 0, paths: () => null, points: { show: true, size: 9, fill: C.green, stroke: '#fff', width: 1.5 } },
      { label: online() ? 'taking uploads' : 'open for uploads', stroke: C.gray, width: 2, dash: [5, 4], spanGaps: true, points: { show: true, size: 7, fill: '#fff' } },
      { label: 'aggregate', stroke: C.orange, width: 7, spanGaps: true, points: { show: true, size: 7, fill: C.orange } },
      { label: online() ? 'evaluate' : 'evaluate (student)', stroke: C.purple, width: 7, spanGaps: true, points: { show: true, size: 7, fill: C.purple } },
    ],
    hooks: { draw: [drawTimeline] },
  }));
}

// ---------------------------------------------------------------- tables and summary

function setField(field: string, text: string, title?: string): void {
  const dd = document.querySelector(`#summary [data-field="${field}"] .v`);
  if (dd) {
    dd.textContent = text;
    if (title !== undefined) (dd as HTMLElement).title = title;
  }
}

/** The last completed round (online: published version), from whichever source is newer. */
function completedRound(): number {
  return Math.max(S.status?.round ?? 0, S.history.at(-1)?.round ?? 0);
}

function renderSummary(): void {
  const st = S.status;
  const connText: Record<Conn, string> = { connecting: 'connecting…', live: 'live', disconnected: 'reconnecting…', unauthorized: 'viewer token needed' };
  setField('state', connText[S.conn]);
  setField('strategy', S.server.strategy ?? '—');
  setField('student', S.server.student ?? '—');
  setField('backend', S.server.backend?.name ?? '—');
  const total = S.server.config?.rounds;
  const unit = online() ? 'versions' : 'rounds';
  const roundLabel = document.querySelector('#summary [data-field="round"] dt');
  if (roundLabel) roundLabel.textContent = online() ? 'versions' : 'round';
  const done = completedRound();
  setField('round', st ? `${done}${total ? ` / ${total}` : ' (continual)'}` : '—', total === 0 ? `rounds: 0 = run forever` : `${unit} to run: ${total ?? '?'}`);
  setField('version', st ? `v${Math.max(st.studentVersion, S.history.at(-1)?.studentVersion ?? 0)}` : '—');
  const last = [...S.history].reverse().find((r) => r.studentAccuracy != null);
  setField('accuracy', last ? `${pct(last.studentAccuracy)}` : '—', last ? `${online() ? 'version' : 'round'} ${last.round}` : '');
  const cl = st?.clients ?? [];
  setField('clients', st ? `${cl.filter((c) => c.connected).length} / ${cl.length} connected` : '—');
  // Differential privacy (ε spent so far, the most any client has) and secure aggregation, from the latest round.
  const dp = [...S.history].reverse().find((r) => r.privacy)?.privacy;
  const secure = S.history.some((r) => r.secureAggregation);
  setField(
    'privacy',
    dp ? `ε ${dp.epsilon.toFixed(2)}${secure ? ' · secure agg.' : ''}` : secure ? 'secure aggregation' : S.history.length ? 'off' : '—',
    dp ? `differential privacy: ε ${dp.epsilon.toFixed(3)} spent so far (the most any client has), ${dp.epsilonRound.toFixed(3)} per upload` : '',
  );
  // From the event stream (the client list it also comes with is throttled, so it may be a beat behind).
  let now = '—';
  const t = S.timeline;
  const lastPhase = t && !roundDone(t) ? t.events.filter((e) => e.kind !== 'upload').at(-1)?.kind : undefined;
  const uploads = t ? t.events.filter((e) => e.kind === 'upload').length : 0;
  if (t && !roundDone(t) && online()) {
    now = lastPhase === 'evaluate' ? `publishing v${t.round}` : `building v${t.round} · ${uploads} upload${uploads === 1 ? '' : 's'} in`;
  } else if (t && !roundDone(t) && lastPhase === undefined) {
    const left = t.deadline === null ? null : (t.deadline - serverNow()) / 1000;
    now = `round ${t.round} open · ${uploads}/${t.selected.length} uploads` + (left === null ? '' : ` · deadline ${left > 0 ? `in ${fmtSeconds(left)}` : 'passed'}`);
  } else if (t && !roundDone(t)) {
    now = `round ${t.round}: ${lastPhase === 'closed' ? 'closed' : lastPhase === 'aggregate' ? 'aggregating' : 'evaluating the student'}`;
  } else if (st && total && done >= total) {
    now = `finished (${total} ${unit})`;
  } else if (st) {
    now = online() ? 'waiting for uploads' : 'waiting for clients';
  }
  setField('open', now);
}

function pill(text: string, kind: '' | 'ok' | 'warn' | 'bad' | 'info' = ''): HTMLElement {
  return el('span', text, kind ? `pill ${kind}` : 'pill');
}

function renderClients(): void {
  const st = S.status;
  const list = [...(st?.clients ?? [])].sort((a, b) => Number(b.connected) - Number(a.connected) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const table = $('clients') as HTMLTableElement;
  $('clients-empty').hidden = list.length > 0;
  $('clients-count').textContent = list.length ? `${list.filter((c) => c.connected).length} of ${list.length} connected` : '';
  $('staleness-head').textContent = online() ? 'staleness (versions)' : 'rounds since upload';
  $('staleness-head').title = online()
    ? 'how many student versions behind its last upload was when it arrived'
    : 'completed rounds since its last accepted upload';
  const t = S.timeline;
  const collecting = !!t && !roundDone(t) && !t.events.some((e) => e.kind === 'closed');
  const uploadedNow = new Set(t ? t.events.filter((e) => e.kind === 'upload').map((e) => e.clientId) : []);
  const now = serverNow();
  const rows = list.map((c) => {
    const tr = el('tr');
    tr.dataset.clientId = c.id;
    if (!c.connected) tr.className = 'offline';
    const cell = (col: string, content: string | Node, cls = '') => {
      const td = el('td', undefined, cls);
      td.dataset.col = col;
      td.append(content);
      tr.append(td);
      return td;
    };
    cell('id', c.id, 'l id');
    cell('model', c.model, 'l');
    cell('backend', c.backend ?? '—', 'l');
    cell('numSamples', c.numSamples.toLocaleString('en-US'));
    cell('connected', c.connected ? pill('connected', 'ok') : pill('offline', 'bad'), 'l');
    let phase: HTMLElement = pill('—');
    if (online()) {
      if (t && !roundDone(t) && uploadedNow.has(c.id)) phase = pill(`in v${t.round}`, 'ok');
      else if (c.connected) phase = pill('training', 'info');
    } else if (t && collecting) {
      if (uploadedNow.has(c.id)) phase = pill('uploaded', 'ok');
      else if (t.selected.includes(c.id)) phase = pill(c.connected ? 'training' : 'pending', c.connected ? 'info' : 'warn');
      else phase = pill('not selected');
    }
    cell('round-state', phase, 'l');
    const lastAt = c.lastUploadAt ? Date.parse(c.lastUploadAt) : null;
    const lu = cell('lastUpload', lastAt ? ago(now - lastAt) : 'never');
    if (c.lastUploadAt) lu.title = new Date(c.lastUploadAt).toLocaleString();
    cell('lastRound', c.lastUploadRound == null ? '—' : online() ? `v${c.lastUploadRound}` : String(c.lastUploadRound));
    let stale = '—';
    if (online()) stale = c.lastUploadStaleness == null ? '—' : String(c.lastUploadStaleness);
    else if (c.lastUploadRound != null) stale = String(Math.max(0, completedRound() - c.lastUploadRound));
    cell('staleness', stale);
    return tr;
  });
  table.tBodies[0].replaceChildren(...rows);
}

function renderRounds(): void {
  document.querySelectorAll('[data-unit]').forEach((e) => (e.textContent = online() ? 'per student version' : 'per round'));
  document.querySelectorAll('[data-unit-title]').forEach((e) => (e.textContent = online() ? 'Student versions' : 'Rounds'));
  const body = ($('rounds') as HTMLTableElement).tBodies[0];
  const rows = S.history
    .slice(-15)
    .reverse()
    .map((r) => {
      const tr = el('tr');
      tr.dataset.round = String(r.round);
      const kind = r.status === 'completed' ? 'ok' : r.status === 'no-quorum' ? 'warn' : 'bad';
      const st = el('td', undefined, 'l');
      st.append(pill(r.status, kind));
      tr.append(
        el('td', online() ? `v${r.round}` : String(r.round)),
        st,
        el('td', `${r.participants}/${r.selected}`),
        el('td', r.dropped.length ? String(r.dropped.length) : '—'),
        el('td', fmtBytes(r.uplinkBytes)),
        el('td', fmtBytes(r.downlinkBytes)),
        el('td', pct(r.studentAccuracy)),
        el('td', pct(r.meanClientEvalAccuracy)),
        el('td', r.privacy ? r.privacy.epsilon.toFixed(2) : '—'),
        el('td', r.distillLoss == null ? '—' : r.distillLoss.toFixed(4)),
        el('td', r.aggregateSeconds.toFixed(2)),
        el('td', r.seconds.toFixed(1)),
      );
      if (r.dropped.length) tr.children[3].setAttribute('title', r.dropped.join(', '));
      return tr;
    });
  body.replaceChildren(...rows);
  if (!rows.length) {
    const tr = el('tr');
    const td = el('td', 'no completed round yet', 'l empty');
    td.colSpan = 12;
    tr.append(td);
    body.append(tr);
  }
}

// ---------------------------------------------------------------- render scheduling

type Part = 'history' | 'timeline' | 'clients' | 'summary';
const dirty = new Set<Part>();
let scheduled = false;

function changed(...parts: Part[]): void {
  eventCount++;
  for (const p of parts) dirty.add(p);
  publishHooks();
  if (scheduled) return;
  scheduled = true;
  // rAF for smoothness, with a timer in case the tab is hidden (rAF pauses there; the data hooks are current anyway).
  const run = () => {
    if (!scheduled) return;
    scheduled = false;
    render();
  };
  requestAnimationFrame(run);
  setTimeout(run, 250);
}

function render(): void {
  const parts = new Set(dirty);
  dirty.clear();
  const guard = (name: string, f: () => void) => {
    try {
      f();
    } catch (e) {
      console.error(`dashboard: rendering ${name} failed`, e);
    }
  };
  if (parts.has('history')) {
    guard('accuracy', renderAccuracy);
    guard('bytes', renderBytes);
    guard('per-class', renderPerClass);
    guard('tasks', renderTasks);
    guard('versions', renderVersions);
    guard('rounds', renderRounds);
  }
  if (parts.has('timeline') || parts.has('history')) guard('timeline', renderTimeline);
  if (parts.has('clients') || parts.has('timeline') || parts.has('history')) guard('clients', renderClients);
  guard('summary', renderSummary);
}

// ---------------------------------------------------------------- the feed

const TOKEN_KEY = 'fedistill.viewerToken';
/** A token typed into the form, for when localStorage is unavailable (private mode). */
let pendingToken = '';

function storedToken(): string {
  try {
    return localStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return '';
  }
}

function setConn(c: Conn): void {
  S.conn = c;
  changed('summary');
}

/**
 * A `/#viewer=TOKEN` link (the server prints one when it made the token itself) fills the viewer token in: a URL
 * fragment never reaches a server's logs, and the page takes it out of the address bar at once.
 */
function takeTokenFromLink(): void {
  const t = new URLSearchParams(location.hash.slice(1)).get('viewer');
  if (!t) return;
  pendingToken = t;
  try {
    localStorage.setItem(TOKEN_KEY, t);
  } catch {
    /* private mode: pendingToken carries it for this page */
  }
  history.replaceState(null, '', location.pathname + location.search);
}

function start(): void {
  takeTokenFromLink();
  charts = {
    acc: new Chart($('student-acc')),
    bytes: new Chart($('bytes')),
    timeline: new Chart($('timeline')),
    perClass: new Chart($('per-class')),
    tasks: new Chart($('tasks')),
    versions: new Chart($('versions')),
  };
  publishHooks();
  renderSummary();
  renderRounds();

  const socket = io('/dashboard', {
    // A function, so every (re)connect presents the token stored last.
    auth: (cb) => cb({ viewerToken: storedToken() || pendingToken }),
    transports: ['websocket', 'polling'],
    tryAllTransports: true,
  });

  socket.on('snapshot', (s: DashboardSnapshot) => {
    S.offset = s.at - Date.now();
    S.server = s.server as ServerInfo;
    S.status = s.status;
    S.history = [...s.history];
    S.timeline = s.timeline;
    S.tasks = s.tasks;
    changed('history', 'timeline', 'clients', 'summary');
  });
  socket.on('round-start', (e: { round: number; at: number; deadline: number | null; selected: string[] }) => {
    S.timeline = { round: e.round, openedAt: e.at, deadline: e.deadline, selected: e.selected, events: [] };
    changed('timeline', 'clients');
  });
  socket.on('upload', (e: { round: number; clientId: string; bytes: number; at: number; staleness?: number }) => {
    if (S.timeline?.round !== e.round) S.timeline = { round: e.round, openedAt: e.at, deadline: null, selected: [], events: [] };
    S.timeline.events.push({ kind: 'upload', at: e.at, clientId: e.clientId, bytes: e.bytes, staleness: e.staleness });
    changed('timeline', 'clients');
  });
  socket.on('phase', (e: { round: number; phase: Phase; at: number }) => {
    if (S.timeline?.round === e.round) S.timeline.events.push({ kind: e.phase, at: e.at });
    changed('timeline');
  });
  socket.on('round', (r: RoundSummary) => {
    const i = S.history.findIndex((h) => h.round === r.round);
    if (i >= 0) S.history[i] = r;
    else {
      S.history.push(r);
      S.history.sort((a, b) => a.round - b.round);
    }
    changed('history', 'summary');
  });
  socket.on('clients', (c: ClientsUpdate) => {
    S.status = c;
    changed('clients', 'summary');
  });

  socket.on('connect', () => {
    hideAuth();
    setConn('live');
  });
  socket.on('disconnect', (reason) => {
    setConn('disconnected');
    // The server hung up on purpose (shutting a namespace down): socket.io won't retry by itself then; we do.
    if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 2000);
  });
  socket.on('connect_error', (err) => {
    if (/unauthorized/i.test(err.message)) {
      setConn('unauthorized');
      showAuth(storedToken() || pendingToken ? 'That viewer token was refused.' : '');
    } else {
      setConn('disconnected');
    }
  });

  $('auth-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = ($('auth-token') as HTMLInputElement).value.trim();
    if (!v) return;
    try {
      localStorage.setItem(TOKEN_KEY, v);
    } catch {
      /* private mode: it still works for this page */
    }
    pendingToken = v;
    hideAuth();
    setConn('connecting');
    socket.connect();
  });

  // Local clock only: relative times, the deadline countdown and the timeline's "now" line.
  setInterval(() => {
    renderSummary();
    if (S.status?.clients.some((c) => c.lastUploadAt)) renderClients();
    if (S.timeline && !roundDone(S.timeline)) renderTimeline();
  }, 1000);
}

function showAuth(error: string): void {
  $('auth').hidden = false;
  const e = $('auth-error');
  e.hidden = !error;
  e.textContent = error;
  ($('auth-token') as HTMLInputElement).focus();
}

function hideAuth(): void {
  $('auth').hidden = true;
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
