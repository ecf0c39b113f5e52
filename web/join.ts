/**
 * The join page (/join): a person picks their private data, the page trains on it with the client SDK, uploads only
 * logits on the proxy set, adopts the student and shows its progress. A reload rejoins as the same client (id in
 * and its resume token in localStorage, settings in sessionStorage, picked images decoded once and kept in IndexedDB).
 */
import uPlot from 'uplot';
import {
  FedistillClient,
  IndexedDbProxyCache,
  datasetFromImages,
  fetchDemoShard,
  holdOut,
  initBrowserBackend,
  labelFromPath,
  type BrowserBackendInfo,
  type Dataset,
  type LabelledImage,
} from '../client/browser.ts';
import { IdbStore } from '../client/idb.ts';

interface Federation {
  strategy: string;
  student: { kind: 'mlp' | 'cnn'; inputShape: [number, number, number]; numClasses: number };
  classNames: string[];
  auth: { clientToken: boolean };
  demoData: unknown;
  round: number;
  rounds: number;
}

interface Session {
  server: string;
  clientId: string;
  model: 'mlp' | 'cnn';
  source: 'files' | 'demo';
  demo: { shard: number; of: number; alpha: number; seed: number };
  allowCpu?: boolean;
  /** Differential-privacy budget of this client (ε at δ = 1e-5); absent = none. */
  epsilon?: number;
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const input = (id: string) => $<HTMLInputElement>(id);
const SESSION_KEY = 'fedistill.session';
const TOKEN_KEY = 'fedistill.token';
const t0 = performance.now();

/** What tests and curious people can read: the page's state, also mirrored to body data attributes. */
const state = {
  state: 'setup',
  backend: null as BrowserBackendInfo | null,
  uploads: 0,
  rounds: [] as number[],
  ownAccuracy: [] as (number | null)[],
  studentAccuracy: [] as (number | null)[],
  firstUploadMs: null as number | null,
  client: null as FedistillClient | null,
  error: null as string | null,
};
(window as unknown as { __join: typeof state }).__join = state;

function setState(s: string, detail?: string): void {
  state.state = s;
  document.body.dataset.state = s;
  $('state').textContent = detail ?? s;
  $('state').className = `pill ${s}`;
}

function log(msg: string): void {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()}  ${msg}`;
  $('log').prepend(li);
  while ($('log').childElementCount > 200) $('log').lastElementChild!.remove();
}

// ---- settings: query string for demo links, fragment for the token (fragments never reach server logs) ----

const params = new URLSearchParams(location.search);
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.has('token')) {
  sessionStorage.setItem(TOKEN_KEY, hash.get('token')!);
  history.replaceState(null, '', location.pathname + location.search);
}
input('server').value = params.get('server') ?? location.origin;
input('token').value = sessionStorage.getItem(TOKEN_KEY) ?? '';
const storedId = localStorage.getItem('fedistill.clientId');
input('client-id').value = params.get('id') ?? storedId ?? `web-${Math.random().toString(36).slice(2, 8)}`;
for (const k of ['shard', 'of', 'alpha', 'seed'] as const) if (params.has(k)) input(k).value = params.get(k)!;
if (params.get('source') === 'demo' || params.has('shard')) (document.querySelector('input[name=source][value=demo]') as HTMLInputElement).checked = true;

function source(): 'files' | 'demo' {
  return (document.querySelector('input[name=source]:checked') as HTMLInputElement).value as 'files' | 'demo';
}
function showSource(): void {
  $('files-pane').hidden = source() !== 'files';
  $('demo-pane').hidden = source() !== 'demo';
}
document.querySelectorAll('input[name=source]').forEach((r) => r.addEventListener('change', showSource));
showSource();

let federation: Federation | null = null;
async function loadFederation(server: string): Promise<Federation> {
  const res = await fetch(new URL('/federation', server));
  if (!res.ok) throw new Error(`GET ${server}/federation: HTTP ${res.status}`);
  const f = (await res.json()) as Federation;
  federation = f;
  const [h, w, c] = f.student.inputShape;
  $('federation').textContent = `strategy ${f.strategy} · student ${f.student.kind} · ${f.classNames.length} classes · input ${h}×${w}×${c}` +
    ` · round ${f.round}${f.rounds ? ` of ${f.rounds}` : ''}${f.auth.clientToken ? ' · needs a client token' : ''}`;
  const sel = $<HTMLSelectElement>('files-class');
  sel.replaceChildren(new Option('(choose a class)', ''), ...f.classNames.map((n, i) => new Option(`${i} · ${n}`, String(i))));
  if (!params.has('model')) $<HTMLSelectElement>('model').value = f.student.kind;
  if (!f.demoData) (document.querySelector('input[name=source][value=demo]') as HTMLInputElement).disabled = true;
  return f;
}
if (params.has('model')) $<HTMLSelectElement>('model').value = params.get('model')!;
if (params.has('epsilon')) input('epsilon').value = params.get('epsilon')!;

// ---- the user's own images ----

const picked: { file: File; label: number }[] = [];
/** A folder pick takes each file's class from its folder names; a files pick needs the class chosen beside it. */
function addFiles(files: FileList | null, fromFolders: boolean): void {
  if (!files || !federation) return;
  const fixed = fromFolders ? '' : $<HTMLSelectElement>('files-class').value;
  let skipped = 0;
  for (const file of Array.from(files)) {
    if (!file.type.startsWith('image/')) continue;
    const label = fromFolders ? labelFromPath(file.webkitRelativePath || file.name, federation.classNames) : fixed === '' ? null : Number(fixed);
    if (label === null) skipped++;
    else picked.push({ file, label });
  }
  const counts = new Map<number, number>();
  for (const p of picked) counts.set(p.label, (counts.get(p.label) ?? 0) + 1);
  $('files-summary').textContent = picked.length
    ? `${picked.length} images: ` + [...counts].sort((a, b) => a[0] - b[0]).map(([l, n]) => `${federation!.classNames[l]} ${n}`).join(', ')
    : 'no images picked yet';
  if (skipped) {
    $('files-summary').textContent += fromFolders
      ? ` (${skipped} skipped: no folder in their path names a class)`
      : ` (${skipped} skipped: choose their class first)`;
  }
}
input('pick-folder').addEventListener('change', (e) => addFiles((e.target as HTMLInputElement).files, true));
input('pick-files').addEventListener('change', (e) => addFiles((e.target as HTMLInputElement).files, false));
$('clear-files').addEventListener('click', () => {
  picked.length = 0;
  $('files-summary').textContent = 'no images picked yet';
});

/** The decoded private images are kept in this origin's IndexedDB (never sent anywhere) so a reload can rejoin. */
const privateStore = new IdbStore<Dataset>('fedistill-private', 'data');

async function privateData(s: Session, f: Federation, resuming: boolean): Promise<Dataset> {
  if (s.source === 'demo') {
    log(`loading demo shard ${s.demo.shard} of ${s.demo.of} (α=${s.demo.alpha}, seed ${s.demo.seed})…`);
    return fetchDemoShard({ baseUrl: s.server, ...s.demo });
  }
  if (resuming && picked.length === 0) {
    const kept = await privateStore.get('current');
    if (kept) return kept;
    throw new Error('the images picked before the reload are gone: pick them again');
  }
  if (picked.length === 0) throw new Error('pick some images first (or use a demo shard)');
  const items: LabelledImage[] = picked.map((p) => ({ image: p.file, label: p.label }));
  const ds = await datasetFromImages(items, {
    shape: f.student.inputShape,
    numClasses: f.student.numClasses,
    onProgress: (done, total) => setPhase(`decoding images ${done}/${total}`, done / total),
  });
  await privateStore.put('current', ds);
  return ds;
}

// ---- progress and the accuracy plot ----

function setPhase(text: string, fraction: number): void {
  $('phase').textContent = text;
  $<HTMLProgressElement>('progress').value = fraction;
}

let chart: uPlot | null = null;
function plot(): void {
  const data: uPlot.AlignedData = [state.rounds, state.ownAccuracy.map((a) => (a === null ? null : 100 * a)), state.studentAccuracy.map((a) => (a === null ? null : 100 * a))];
  if (!chart) {
    const el = $('acc-chart');
    chart = new uPlot(
      {
        width: Math.max(280, el.clientWidth),
        height: 220,
        title: 'accuracy per round',
        scales: { x: { time: false } },
        axes: [{ label: 'round', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500], values: (_u, v) => v.map((x) => String(x)) }, { label: '%' }],
        series: [{ label: 'round' }, { label: 'my model (held-out private data)', stroke: '#2b6cb0', width: 2, points: { show: true } }, { label: 'student (server)', stroke: '#c05621', width: 2, points: { show: true } }],
      },
      data,
      el,
    );
    addEventListener('resize', () => chart?.setSize({ width: Math.max(280, el.clientWidth), height: 220 }));
  } else chart.setData(data);
}

function recordRound(round: number, own: number | null | undefined, student: number | null | undefined): void {
  let i = state.rounds.indexOf(round);
  if (i < 0) {
    state.rounds.push(round);
    state.ownAccuracy.push(null);
    state.studentAccuracy.push(null);
    i = state.rounds.length - 1;
  }
  if (own !== undefined) state.ownAccuracy[i] = own;
  if (student !== undefined) state.studentAccuracy[i] = student;
  plot();
}

// ---- joining ----

function readSession(): Session {
  return {
    server: input('server').value.replace(/\/+$/, ''),
    clientId: input('client-id').value.trim(),
    model: $<HTMLSelectElement>('model').value as 'mlp' | 'cnn',
    source: source(),
    demo: { shard: Number(input('shard').value), of: Number(input('of').value), alpha: Number(input('alpha').value), seed: Number(input('seed').value) },
    epsilon: Number(input('epsilon').value) > 0 ? Number(input('epsilon').value) : undefined,
  };
}

async function join(s: Session, resuming: boolean): Promise<void> {
  $('setup-error').textContent = '';
  if (!/^[A-Za-z0-9_.:-]+$/.test(s.clientId)) throw new Error("client id may use only letters, digits and '_.:-'");
  const token = input('token').value;
  sessionStorage.setItem(TOKEN_KEY, token);
  localStorage.setItem('fedistill.clientId', s.clientId);
  $('setup').hidden = true;
  $('run').hidden = false;
  setState('starting');
  const f = await loadFederation(s.server);

  let backend: BrowserBackendInfo;
  try {
    backend = await initBrowserBackend({ allowCpu: s.allowCpu, log });
  } catch (e) {
    setState('error', 'no fast backend');
    const warn = $('backend-warning');
    warn.hidden = false;
    warn.innerHTML = '';
    warn.append(`${(e as Error).message}. `);
    const btn = document.createElement('button');
    btn.textContent = 'Train on the slow CPU backend anyway';
    btn.onclick = () => void join({ ...s, allowCpu: true }, resuming).catch(fail);
    warn.append(btn);
    return;
  }
  state.backend = backend;
  $('backend').textContent = `${backend.name}${backend.device ? ` (${backend.device})` : ''}`;
  if (backend.warning) {
    $('backend-warning').hidden = false;
    $('backend-warning').textContent = backend.warning;
  }

  const all = await privateData(s, f, resuming);
  if (all.shape.join() !== f.student.inputShape.join()) throw new Error(`private data is ${all.shape.join('×')}, the federation expects ${f.student.inputShape.join('×')}`);
  const { train, evalSet } = all.count >= 20 ? holdOut(all, 0.15) : { train: all, evalSet: null };
  $('samples').textContent = `${train.count}${evalSet ? ` (+${evalSet.count} held out to measure)` : ''}`;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));

  const resumeKey = `fedistill.resume.${s.server}.${s.clientId}`;
  // What this id's data has already cost, kept like the resume token: a reload must not hand out a fresh budget.
  const privacyKey = `fedistill.privacy.${s.server}.${s.clientId}`;
  const spent = localStorage.getItem(privacyKey);
  const privacy = s.epsilon ? { epsilon: s.epsilon, state: spent ? JSON.parse(spent) : undefined } : undefined;
  if (privacy) $('privacy-wrap').hidden = false;
  const client = new FedistillClient({
    privacy,
    url: s.server,
    token,
    clientId: s.clientId,
    model: s.model,
    data: train,
    evalSet,
    proxyCache: new IndexedDbProxyCache(),
    // Kept as long as the client id (localStorage): the server refuses a known id, even offline, without its token.
    resumeToken: localStorage.getItem(resumeKey) ?? undefined,
    log,
  });
  state.client = client;
  client.on('welcome', (w) => {
    localStorage.setItem(resumeKey, w.resumeToken);
    setState('connected', `connected · ${w.strategy}`);
  });
  client.on('disconnected', (reason) => setState('reconnecting', `reconnecting (${reason})`));
  client.on('round-start', (r) => {
    setState('training', `training round ${r.round}`);
    $('round').textContent = String(r.round);
  });
  client.on('progress', (p) => {
    if (p.phase === 'logits') return setPhase(`round ${p.round} · computing logits on the proxy set`, 1);
    const perEpoch = p.total / p.epochs;
    const inEpoch = p.done - p.epoch * perEpoch;
    setPhase(`round ${p.round} · ${p.phase === 'digest' ? 'learning the consensus' : 'local training'} · epoch ${p.epoch + 1}/${p.epochs}`, inEpoch / perEpoch);
  });
  client.on('round-done', (d) => {
    state.uploads++;
    state.firstUploadMs ??= performance.now() - t0;
    document.body.dataset.uploads = String(state.uploads);
    $('uploads').textContent = String(state.uploads);
    setState('waiting', `uploaded round ${d.round}`);
    setPhase(`round ${d.round} uploaded (${(d.uploadBytes / 1024).toFixed(1)} KB of ${d.task}); waiting for the others`, 1);
    log(`round ${d.round}: trained in ${d.stats.trainSeconds.toFixed(1)} s${d.adoptedStudent ? ' from the student' : ''}, ` +
      `own accuracy ${d.stats.evalAccuracy !== undefined ? (100 * d.stats.evalAccuracy).toFixed(1) + '%' : 'n/a'}, sent ${d.uploadBytes} B`);
    recordRound(d.round, d.stats.evalAccuracy ?? null, undefined);
  });
  client.on('round-result', (r) => {
    if (federation) federation.round = r.round;
    $('federation').textContent = $('federation').textContent!.replace(/round \d+/, `round ${r.round}`);
    if (r.studentAccuracy !== undefined) log(`round ${r.round} done: ${r.participants} uploads, student ${(100 * r.studentAccuracy).toFixed(2)}%`);
    if (state.rounds.includes(r.round) || r.studentAccuracy !== undefined) recordRound(r.round, undefined, r.studentAccuracy ?? null);
    if (state.state === 'waiting') setState('connected', `round ${r.round} complete`);
  });
  client.on('server-error', (e) => log(`server: ${e.code}: ${e.message}`));
  client.on('privacy', (p) => {
    localStorage.setItem(privacyKey, JSON.stringify(p.state));
    $('privacy').textContent = `${p.epsilon.toFixed(2)} of ${p.budget}`;
  });
  client.on('declined', (d) => {
    log(`round ${d.round} declined: ${d.reason}`);
    setState('waiting', `declined round ${d.round} (privacy)`);
  });
  await client.start();
  client.finished().then(
    (end) => {
      // The federation is over (or the server is shutting down): nothing to rejoin on reload.
      sessionStorage.removeItem(SESSION_KEY);
      const acc = end.studentAccuracy !== undefined ? `, student ${(100 * end.studentAccuracy).toFixed(2)}%` : '';
      setState('ended', end.reason === 'completed' ? `federation complete after round ${end.round}` : 'server shut down');
      setPhase(`${end.reason === 'completed' ? 'done' : 'stopped'} after round ${end.round}${acc}`, 1);
      if (end.studentPath) {
        const a = document.createElement('a');
        a.href = new URL(end.studentPath, s.server).href;
        a.textContent = 'the student (tfjs model.json)';
        $('federation').append(' · ', a);
      }
      log(`federation ${end.reason} after round ${end.round}${acc}`);
    },
    (e: Error & { code?: string }) => {
      if (e.code !== 'stopped') fail(e);
    },
  );
}

function fail(e: unknown): void {
  state.error = (e as Error).message;
  setState('error', 'error');
  log(`error: ${(e as Error).message}`);
  $('setup-error').textContent = (e as Error).message;
  if (!state.client) {
    $('setup').hidden = false;
    sessionStorage.removeItem(SESSION_KEY);
  }
}

$('start').addEventListener('click', () => void join(readSession(), false).catch(fail));
$('leave').addEventListener('click', () => {
  state.client?.stop();
  state.client = null;
  sessionStorage.removeItem(SESSION_KEY);
  void privateStore.delete('current');
  setState('left');
  log('left the federation (the server counts this as a dropout)');
});

const saved = sessionStorage.getItem(SESSION_KEY);
loadFederation(input('server').value)
  .then(() => {
    if (saved) {
      const s = JSON.parse(saved) as Session;
      log('rejoining after a reload');
      return join(s, true);
    }
    if (params.get('autostart') === '1') return join(readSession(), false);
  })
  .catch(fail);
