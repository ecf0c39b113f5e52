/** Real Chromium for the browser tests: Debian's, driven by playwright-core (which downloads no browser of its own). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { resolveRepoPath } from '../datasets/fashion-mnist.ts';

/** Launch headless Chromium; builds dist/browser first if a checkout skipped `npm ci`'s build. */
export async function launchChromium(): Promise<Browser> {
  const path = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
  if (!path) throw new Error("Chromium not found: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH");
  if (!existsSync(resolveRepoPath('dist', 'browser', 'join.html'))) {
    const r = spawnSync(process.execPath, [resolveRepoPath('scripts', 'build.mjs')], { stdio: 'inherit' });
    assert.equal(r.status, 0, 'npm run build failed');
  }
  return chromium.launch({ executablePath: path, args: ['--no-sandbox'], headless: true });
}

/**
 * Record every WebSocket frame the context's pages send, below socket.io, into `byPage` (keyed by the page's `id`
 * query parameter); the binding survives reloads. The init script is a string, not a function: the test's own
 * transpiler would add helpers (__name) the page does not have.
 */
export async function recordWire(ctx: BrowserContext, byPage: Map<string, (string | Uint8Array)[]>): Promise<void> {
  await ctx.exposeBinding('__fedistillWire', ({ page }, kind: string, data: string) => {
    const id = new URL(page.url()).searchParams.get('id') ?? page.url();
    if (!byPage.has(id)) byPage.set(id, []);
    byPage.get(id)!.push(kind === 'text' ? data : new Uint8Array(Buffer.from(data, 'base64')));
  });
  await ctx.addInitScript({
    content: `(() => {
      const send = WebSocket.prototype.send;
      const b64 = (u) => { let s = ''; for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000)); return btoa(s); };
      WebSocket.prototype.send = function (d) {
        if (typeof d === 'string') window.__fedistillWire('text', d);
        else if (d instanceof Blob) window.__fedistillWire('text', '(blob)'); // engine.io never sends Blobs; would fail the checks
        else if (ArrayBuffer.isView(d)) window.__fedistillWire('binary', b64(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
        else window.__fedistillWire('binary', b64(new Uint8Array(d)));
        return send.call(this, d);
      };
    })();`,
  });
}
