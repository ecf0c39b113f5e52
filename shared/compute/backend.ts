/**
 * Pick the fastest available TensorFlow.js backend for training, and say which one was picked — loudly when it
 * is the pure-JS 'cpu' backend (~100x slower for CNN training than the alternatives).
 *
 * Order for 'auto': @tensorflow/tfjs-node-gpu -> @tensorflow/tfjs-node -> @tensorflow/tfjs-backend-wasm (with the
 * training kernels of ./wasm-grad-kernels.ts, verified by a self-test against 'cpu') -> 'cpu'.
 * A specific `prefer` starts the chain at that candidate (e.g. 'wasm' tries wasm, then cpu).
 *
 * Isomorphic: the native packages are optional and loaded with a dynamic import of a specifier held in a variable
 * (so bundlers and tsc do not require them); in a browser they simply fail to load and are skipped.
 */
import * as tf from '@tensorflow/tfjs';
import { patchedWasmKernels, registerWasmTrainingKernels, selfTestWasmKernels } from './wasm-grad-kernels.ts';

export type BackendPreference = 'auto' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_PREFERENCES: readonly BackendPreference[] = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

export interface InitBackendOptions {
  /** Default: env var FEDISTILL_BACKEND, else 'auto'. */
  prefer?: BackendPreference;
  /** Passed to the wasm backend's setThreadsCount (stock tfjs-backend-wasm ignores it under Node). */
  threads?: number;
  /** One line per candidate tried, plus a final line naming the chosen backend. Default: console.log. */
  log?: (msg: string) => void;
  /** Browser only: passed to setWasmPaths (folder prefix or file map for the .wasm binaries). */
  wasmPaths?: string | Record<string, string>;
}

export interface BackendInfo {
  /** tf.getBackend() after initialisation. */
  name: string;
  /** The package that supplied the backend. */
  source: string;
  /** Kernels replaced/added by fedistill (wasm only). */
  patchedKernels: string[];
  /** The wasm kernels' self-test against 'cpu' (wasm only). */
  selfTest?: { ok: boolean; maxRelErr: number };
  /** Gradients of the models we train (dense + conv + max-pool) are available and verified on this backend. */
  trainingCapable: boolean;
  /** Set whenever the result is degraded: the 'cpu' fallback, or a failed wasm self-test. */
  warning?: string;
  /** Every candidate tried in order, with the reason it was rejected. */
  tried: { candidate: string; error?: string }[];
}

interface Candidate {
  id: Exclude<BackendPreference, 'auto'>;
  pkg: string;
  backendName: string;
}

const CHAIN: Candidate[] = [
  { id: 'tensorflow-gpu', pkg: '@tensorflow/tfjs-node-gpu', backendName: 'tensorflow' },
  { id: 'tensorflow', pkg: '@tensorflow/tfjs-node', backendName: 'tensorflow' },
  { id: 'wasm', pkg: '@tensorflow/tfjs-backend-wasm', backendName: 'wasm' },
  { id: 'cpu', pkg: '@tensorflow/tfjs (cpu, pure JS)', backendName: 'cpu' },
];

const CPU_WARNING =
  "fedistill is running on the pure-JS 'cpu' TensorFlow.js backend: training is ~100x slower for CNNs than on " +
  "'wasm' or tfjs-node. Install @tensorflow/tfjs-node (or check why @tensorflow/tfjs-backend-wasm failed above).";

let last: BackendInfo | undefined;

/** The result of the last initBackend() call (undefined before the first). */
export function backendInfo(): BackendInfo | undefined {
  return last;
}

function envPreference(log: (m: string) => void): BackendPreference {
  // globalThis.process: this module must also load in a browser.
  const raw = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.FEDISTILL_BACKEND;
  if (raw == null || raw === '') return 'auto';
  const v = raw.trim().toLowerCase() as BackendPreference;
  if (BACKEND_PREFERENCES.includes(v)) return v;
  log(`[backend] WARNING: ignoring FEDISTILL_BACKEND='${raw}' (expected one of ${BACKEND_PREFERENCES.join(', ')}); using 'auto'`);
  return 'auto';
}

function errMsg(e: unknown): string {
  const m = (e as { message?: unknown })?.message;
  const s = typeof m === 'string' ? m : String(e);
  return s.split('\n')[0].slice(0, 300);
}

/** Dynamic import the bundlers/tsc can't resolve statically (the specifier is a runtime value). */
async function importOptional(specifier: string): Promise<Record<string, unknown>> {
  const spec = specifier;
  return (await import(/* @vite-ignore */ /* webpackIgnore: true */ spec)) as Record<string, unknown>;
}

async function activate(backendName: string): Promise<void> {
  if (tf.findBackendFactory(backendName) == null) {
    throw new Error(`package loaded but backend '${backendName}' is not registered with this @tensorflow/tfjs ` +
      `instance (a second copy of @tensorflow/tfjs-core with another version?)`);
  }
  const ok = await tf.setBackend(backendName);
  if (!ok) throw new Error(`tf.setBackend('${backendName}') returned false`);
  await tf.ready();
  if (tf.getBackend() !== backendName) throw new Error(`active backend is '${tf.getBackend()}', not '${backendName}'`);
}

/**
 * Initialise the best available backend. Never silently ends on 'cpu': logs a loud warning and sets `warning`.
 * Safe to call more than once (kernel registration is idempotent; the self-test is re-run, ~0.1 s).
 */
export async function initBackend(opts: InitBackendOptions = {}): Promise<BackendInfo> {
  const log = opts.log ?? ((m: string) => console.log(m));
  quietCpuBanner();
  const prefer = opts.prefer ?? envPreference(log);
  if (!BACKEND_PREFERENCES.includes(prefer)) throw new Error(`initBackend: unknown prefer '${String(prefer)}'`);
  const start = prefer === 'auto' ? 0 : CHAIN.findIndex((c) => c.id === prefer);
  const tried: BackendInfo['tried'] = [];

  for (const cand of CHAIN.slice(start)) {
    try {
      let info: BackendInfo;
      if (cand.id === 'tensorflow-gpu' || cand.id === 'tensorflow') {
        await importOptional(cand.pkg);
        await activate(cand.backendName);
        info = { name: tf.getBackend(), source: cand.pkg, patchedKernels: [], trainingCapable: true, tried };
      } else if (cand.id === 'wasm') {
        info = await initWasm(opts, tried, log);
      } else {
        await activate('cpu');
        info = { name: tf.getBackend(), source: cand.pkg, patchedKernels: [], trainingCapable: true, warning: CPU_WARNING, tried };
      }
      tried.push({ candidate: cand.id });
      log(`[backend] ${cand.id}: ok (${cand.pkg})`);
      if (info.warning) {
        const bar = '!'.repeat(100);
        log(`${bar}\n[backend] WARNING: ${info.warning}\n${bar}`);
      }
      log(`[backend] using '${info.name}' from ${info.source}` +
        (info.patchedKernels.length ? `, patched kernels: ${info.patchedKernels.join(', ')}` : '') +
        (info.selfTest ? `, self-test ${info.selfTest.ok ? 'passed' : 'FAILED'} (max rel err ${info.selfTest.maxRelErr.toExponential(2)})` : '') +
        (info.trainingCapable ? '' : ', NOT training-capable for CNNs'));
      last = info;
      return info;
    } catch (e) {
      tried.push({ candidate: cand.id, error: errMsg(e) });
      log(`[backend] ${cand.id}: unavailable (${errMsg(e)})`);
    }
  }
  throw new Error(`initBackend: no TensorFlow.js backend could be initialised: ` +
    tried.map((t) => `${t.candidate}: ${t.error ?? 'ok'}`).join('; '));
}

async function initWasm(opts: InitBackendOptions, tried: BackendInfo['tried'], log: (m: string) => void): Promise<BackendInfo> {
  // A literal specifier: the wasm backend is a regular dependency, so bundlers may (and should) include it.
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  if (opts.wasmPaths != null) wasm.setWasmPaths(opts.wasmPaths);
  if (opts.threads != null) wasm.setThreadsCount(opts.threads);
  registerWasmTrainingKernels();
  await activate('wasm');
  const st = await selfTestWasmKernels();
  const patchedKernels = patchedWasmKernels();
  const info: BackendInfo = {
    name: tf.getBackend(),
    source: '@tensorflow/tfjs-backend-wasm',
    patchedKernels,
    selfTest: { ok: st.ok, maxRelErr: st.maxRelErr },
    // Conv training needs our filter gradient; max-pool training needs our exact MaxPoolGrad (stock drops the
    // gradient of windows whose max is <= 0).
    trainingCapable: patchedKernels.includes('Conv2DBackpropFilter') && patchedKernels.includes('MaxPoolGrad'),
    tried,
  };
  if (!st.ok) {
    const bad = st.details.filter((d) => !d.ok).map((d) => `${d.kernel} ${d.name}: ${d.error ?? `rel err ${d.relErr.toExponential(2)}`}`);
    for (const b of bad.slice(0, 5)) log(`[backend] wasm self-test failure: ${b}`);
    info.warning = `the wasm training-kernel self-test failed; reverted: ${st.reverted.join(', ') || 'none'}. ` +
      (info.trainingCapable ? 'Remaining patched kernels passed.' :
        'CNN training is NOT available on this backend (MLP training and inference still work).');
  }
  return info;
}

/**
 * The pure-JS 'cpu' backend prints an "install tfjs-node" banner the first time it holds data (our self-test and
 * small host-side ops use it even when training runs elsewhere). The chain above already reports, once and plainly,
 * which backend was chosen and why, so the banner is switched off (it relies on the backend's `firstUse` field).
 */
function quietCpuBanner(): void {
  try {
    const cpu = tf.findBackend('cpu') as unknown as { firstUse?: boolean } | null;
    if (cpu && 'firstUse' in cpu) cpu.firstUse = false;
  } catch {
    // not fatal: at worst the banner shows
  }
}
