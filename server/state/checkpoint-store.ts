import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { encodeFrame, decodeFrame } from '../../shared/protocol/frame-codec.ts';
import { silentLogger, type Logger } from '../logger.ts';
import { replaceFile, syncDir } from './durable-file.ts';

/**
 * Round checkpoints in a state dir: one msgpack file per completed round, written atomically
 * (write temp, fsync, rename, fsync dir) and sealed with a sha256 so a torn or corrupt file is detected and skipped.
 */
export interface CheckpointStore {
  save(round: number, state: unknown): Promise<string>;
  /** The newest checkpoint that verifies, or null. */
  loadLatest(): Promise<{ round: number; state: unknown; file: string } | null>;
}

const MAGIC = 'fedistill-ckpt-1';

export class FileCheckpointStore implements CheckpointStore {
  constructor(
    readonly dir: string,
    private readonly log: Logger = silentLogger,
    private readonly keep = 3,
  ) {}

  async save(round: number, state: unknown): Promise<string> {
    const body = encodeFrame(state); // before any await: the state is captured as it is now
    await fs.mkdir(this.dir, { recursive: true });
    const digest = createHash('sha256').update(body).digest('hex');
    const frame = encodeFrame({ magic: MAGIC, round, sha256: digest, body });
    const file = path.join(this.dir, `round-${String(round).padStart(8, '0')}.ckpt`);
    await replaceFile(file, frame);
    await syncDir(this.dir);
    await this.prune();
    return file;
  }

  private async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch {
      return [];
    }
    return names.filter((n) => /^round-\d+\.ckpt$/.test(n)).sort();
  }

  private async prune(): Promise<void> {
    for (const n of await fs.readdir(this.dir)) if (/\.ckpt\.tmp-\d+$/.test(n)) await fs.rm(path.join(this.dir, n), { force: true }); // left by a failed write
    const names = await this.list();
    for (const n of names.slice(0, Math.max(0, names.length - this.keep))) await fs.rm(path.join(this.dir, n), { force: true });
  }

  async loadLatest(): Promise<{ round: number; state: unknown; file: string } | null> {
    for await (const ck of this.newestFirst()) return ck;
    return null;
  }

  /** Every checkpoint that verifies, newest first (ones that don't are skipped with a log line). */
  async *newestFirst(): AsyncGenerator<{ round: number; state: unknown; file: string }> {
    const names = (await this.list()).reverse();
    for (const n of names) {
      const file = path.join(this.dir, n);
      let ck: { round: number; state: unknown; file: string };
      try {
        const outer = decodeFrame(await fs.readFile(file)) as { magic: string; round: number; sha256: string; body: Uint8Array };
        if (outer?.magic !== MAGIC) throw new Error('not a fedistill checkpoint');
        const digest = createHash('sha256').update(outer.body).digest('hex');
        if (digest !== outer.sha256) throw new Error('checksum mismatch (torn or corrupt write)');
        ck = { round: outer.round, state: decodeFrame(outer.body), file };
      } catch (e) {
        this.log.warn({ file, reason: (e as Error).message }, `checkpoint ${file} skipped: ${(e as Error).message}`);
        continue;
      }
      yield ck;
    }
  }
}

/** For tests and throwaway servers: keeps the latest state in memory. */
export class MemoryCheckpointStore implements CheckpointStore {
  private latest: { round: number; state: unknown; file: string } | null = null;
  async save(round: number, state: unknown): Promise<string> {
    this.latest = { round, state: decodeFrame(encodeFrame(state)), file: `memory:${round}` };
    return this.latest.file;
  }
  async loadLatest() {
    return this.latest;
  }
}
