/**
 * Backend selection in a browser: WebGPU, then WebGL, then wasm (with fedistill's training kernels), and the pure-JS
 * 'cpu' backend only when the caller allows it — it trains CNNs about 100x slower, so it is never picked silently.
 *
 * A GPU backend is taken only when it is a real GPU and trains correctly here:
 * - WebGPU needs an adapter that is not the software fallback adapter;
 * - WebGL needs WebGL2 with float32 render targets and a hardware renderer (SwiftShader, llvmpipe and other software
 *   rasterisers are skipped: on them wasm is several times faster);
 * - both must pass a gradient self-test (a tiny conv → relu → max-pool → dense network's loss gradients compared
 *   with the 'cpu' backend), because drivers differ and a backend that trains wrong is worse than a slow one.
 * wasm: on a cross-origin-isolated page tfjs loads its threaded build; `threads` asks it for that many threads.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import { initBackend, type BackendInfo } from '../shared/compute/backend.ts';

export type BrowserBackendName = 'webgpu' | 'webgl' | 'wasm' | 'cpu';

export interface BrowserBackendOptions {
  /** Start the chain here ('auto' = webgpu). */
  prefer?: 'auto' | BrowserBackendName;
  /** Permit the pure-JS 'cpu' backend as a last resort (it is ~100x slower for CNN training). Default false. */
  allowCpu?: boolean;
  /** Folder URL of the tfjs-backend-wasm .wasm files. Default: the folder this bundle was loaded from. */
  wasmPaths?: string;
  /** wasm threads (only on a cross-origin-isolated page, where tfjs loads its threaded build). */
  threads?: number;
  log?: (msg: string) => void;
}

export interface BrowserBackendInfo extends BackendInfo {
  /** For WebGPU/WebGL: the adapter or renderer the browser reported. */
  device?: string;
  /** wasm: whether the multi-threaded build runs (needs a cross-origin-isolated page). */
  threaded?: boolean;
}

const CHAIN: BrowserBackendName[] = ['webgpu', 'webgl', 'wasm', 'cpu'];
const SOFTWARE_RENDERER = /swiftshader|llvmpipe|softpipe|software|basic render|mesa offscreen/i;

let last: BrowserBackendInfo | undefined;

/** The result of the last initBrowserBackend() (undefined before the first). */
export function browserBackendInfo(): BrowserBackendInfo | undefined {
  return last;
}

/** Pick and initialise the best training backend this browser has; throws if only 'cpu' is left and not allowed. */
export async function initBrowserBackend(o: BrowserBackendOptions = {}): Promise<BrowserBackendInfo> {
  const log = o.log ?? ((m: string) => console.log(m));
  const start = o.prefer && o.prefer !== 'auto' ? CHAIN.indexOf(o.prefer) : 0;
  if (start < 0) throw new Error(`initBrowserBackend: unknown backend '${o.prefer}' (${CHAIN.join(', ')})`);
  const tried: BackendInfo['tried'] = [];
  for (const cand of CHAIN.slice(start)) {
    try {
      let info: BrowserBackendInfo;
      if (cand === 'webgpu') info = await tryWebGpu(tried);
      else if (cand === 'webgl') info = await tryWebGl(tried);
      else if (cand === 'wasm') info = await tryWasm(o, tried);
      else {
        if (!o.allowCpu) throw new Error("not allowed: the pure-JS 'cpu' backend trains ~100x slower (pass allowCpu: true to use it anyway)");
        await tf.setBackend('cpu');
        info = { name: 'cpu', source: '@tensorflow/tfjs (cpu, pure JS)', patchedKernels: [], trainingCapable: true, tried,
          warning: "training on the pure-JS 'cpu' backend: ~100x slower than wasm or a GPU" };
      }
      tried.push({ candidate: cand });
      log(`[backend] using '${info.name}'${info.device ? ` (${info.device})` : ''}${info.threaded !== undefined ? `, ${info.threaded ? 'multi' : 'single'}-threaded` : ''}`);
      last = info;
      return info;
    } catch (e) {
      const msg = String((e as Error)?.message ?? e).split('\n')[0].slice(0, 300);
      tried.push({ candidate: cand, error: msg });
      log(`[backend] ${cand}: unavailable (${msg})`);
    }
  }
  throw new Error(`no TensorFlow.js backend fit for training in this browser: ${tried.map((t) => `${t.candidate}: ${t.error}`).join('; ')}`);
}

async function tryWebGpu(tried: BackendInfo['tried']): Promise<BrowserBackendInfo> {
  const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<GpuAdapterLike | null> } }).gpu;
  if (!gpu) throw new Error('navigator.gpu is missing (no WebGPU in this browser or context)');
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter');
  const ai = adapter.info ?? {};
  if (adapter.isFallbackAdapter || ai.isFallbackAdapter) throw new Error('only the software fallback adapter');
  const device = [ai.vendor, ai.architecture, ai.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  await activate('webgpu');
  await gradientSelfTest('webgpu');
  return { name: 'webgpu', source: '@tensorflow/tfjs-backend-webgpu', patchedKernels: [], trainingCapable: true, tried, device };
}

interface GpuAdapterLike {
  isFallbackAdapter?: boolean;
  info?: { vendor?: string; architecture?: string; description?: string; isFallbackAdapter?: boolean };
}

async function tryWebGl(tried: BackendInfo['tried']): Promise<BrowserBackendInfo> {
  const canvas = typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(1, 1) : document.createElement('canvas');
  const gl = canvas.getContext('webgl2') as WebGL2RenderingContext | null;
  if (!gl) throw new Error('no WebGL2 context');
  const dbg = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = String(gl.getParameter(dbg ? dbg.UNMASKED_RENDERER_WEBGL : gl.RENDERER) ?? '');
  gl.getExtension('WEBGL_lose_context')?.loseContext();
  if (SOFTWARE_RENDERER.test(renderer)) throw new Error(`software renderer (${renderer.slice(0, 80)}): wasm is faster`);
  await activate('webgl');
  if (!tf.env().getBool('WEBGL_RENDER_FLOAT32_CAPABLE')) throw new Error('no float32 render targets (16-bit training is too imprecise)');
  await gradientSelfTest('webgl');
  return { name: 'webgl', source: '@tensorflow/tfjs-backend-webgl', patchedKernels: [], trainingCapable: true, tried, device: renderer };
}

async function tryWasm(o: BrowserBackendOptions, tried: BackendInfo['tried']): Promise<BrowserBackendInfo> {
  const wasmPaths = o.wasmPaths ?? new URL('./', import.meta.url).href;
  const info = await initBackend({ prefer: 'wasm', wasmPaths, threads: o.threads, log: () => {} });
  if (info.name !== 'wasm') throw new Error(info.tried.find((t) => t.candidate === 'wasm')?.error ?? 'wasm did not initialise');
  if (!info.trainingCapable) throw new Error(info.warning ?? 'wasm training kernels failed their self-test');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const n = wasm.getThreadsCount();
  return { ...info, tried, threaded: n > 1, device: `${n} thread${n > 1 ? 's' : ''}${globalThis.crossOriginIsolated ? ', threaded build' : ''}` };
}

async function activate(name: string): Promise<void> {
  if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed`);
  await tf.ready();
  if (tf.getBackend() !== name) throw new Error(`active backend is '${tf.getBackend()}', not '${name}'`);
}

/** Loss gradients of a tiny conv net on `name`, compared with 'cpu' (relative error ≤ 1e-3). Leaves `name` active. */
async function gradientSelfTest(name: string): Promise<void> {
  const run = () =>
    tf.tidy(() => {
      let s = 1;
      const rand = (n: number) => Float32Array.from({ length: n }, () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1);
      const x = tf.tensor4d(rand(2 * 8 * 8 * 2), [2, 8, 8, 2]);
      const f = tf.tensor4d(rand(3 * 3 * 2 * 4), [3, 3, 2, 4]);
      const w = tf.tensor2d(rand(3 * 3 * 4 * 3), [36, 3]);
      const y = tf.oneHot(tf.tensor1d([0, 2], 'int32'), 3);
      const g = tf.grads((f: tf.Tensor, w: tf.Tensor) => {
        const h = tf.maxPool(tf.relu(tf.conv2d(x, f as tf.Tensor4D, 1, 'valid')), 2, 2, 'valid').reshape([2, 36]);
        return tf.losses.softmaxCrossEntropy(y, tf.matMul(h, w as tf.Tensor2D));
      });
      return g([f, w]).map((t) => t.dataSync().slice());
    });
  const got = run();
  await activate('cpu');
  const want = run();
  await activate(name);
  let num = 0;
  let den = 0;
  got.forEach((a, i) => a.forEach((v, j) => ((num += (v - want[i][j]) ** 2), (den += want[i][j] ** 2))));
  const err = Math.sqrt(num / Math.max(den, 1e-30));
  if (!(err <= 1e-3)) throw new Error(`gradient self-test failed (relative error ${err.toExponential(2)} against cpu)`);
}
