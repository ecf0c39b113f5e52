import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../logger.ts';
import { readRelease, writeRelease, type StudentRelease } from './student-release.ts';

/**
 * Published student versions kept, in memory (served over HTTP) and under <stateDir>/student/v<N>/: enough to compare
 * the last few versions or roll back one, few enough not to matter (an MLP student is ~1 MB, the CNN ~0.2 MB).
 */
export const STUDENT_VERSIONS_KEPT = 5;

/**
 * The student's releases: each version as a tfjs LayersModel with its model card. Always in memory (so /student works
 * without a state dir); with one, also on disk as student/v<N>/ and student/latest/ (a copy of the newest).
 */
export class StudentShelf {
  private readonly releases = new Map<number, StudentRelease>();

  constructor(
    /** <stateDir>/student, or null to keep releases in memory only. */
    readonly dir: string | null,
    private readonly log: Logger,
    readonly keep = STUDENT_VERSIONS_KEPT,
  ) {}

  /** After a restart: the versions a previous run left on disk. */
  async load(): Promise<void> {
    if (!this.dir) return;
    for (const v of (await this.diskVersions()).slice(-this.keep)) {
      const r = await readRelease(path.join(this.dir, `v${v}`)).catch((e: Error) => {
        this.log.warn({ version: v, err: e.message }, `student v${v} on disk is unreadable; not served`);
        return null;
      });
      if (r) this.releases.set(v, r);
    }
  }

  /** Keep a new release (replacing one of the same version); disk errors are logged, never thrown: training goes on. */
  async put(r: StudentRelease): Promise<void> {
    this.releases.delete(r.version);
    this.releases.set(r.version, r);
    for (const v of this.versions().slice(0, -this.keep)) this.releases.delete(v);
    if (!this.dir) return;
    try {
      await writeRelease(path.join(this.dir, `v${r.version}`), r);
      if (r.version === this.latest()?.version) await writeRelease(path.join(this.dir, 'latest'), r);
      for (const v of (await this.diskVersions()).slice(0, -this.keep)) await fs.rm(path.join(this.dir, `v${v}`), { recursive: true, force: true });
    } catch (e) {
      this.log.error({ version: r.version, dir: this.dir, err: (e as Error).message }, `student v${r.version}: writing it under ${this.dir} failed (still served over HTTP)`);
    }
  }

  latest(): StudentRelease | null {
    const vs = this.versions();
    return vs.length ? this.releases.get(vs[vs.length - 1])! : null;
  }

  get(version: number): StudentRelease | null {
    return this.releases.get(version) ?? null;
  }

  /** Kept versions, ascending. */
  versions(): number[] {
    return [...this.releases.keys()].sort((a, b) => a - b);
  }

  private async diskVersions(): Promise<number[]> {
    const names = await fs.readdir(this.dir!).catch(() => [] as string[]);
    return names
      .map((n) => /^v(\d+)$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }
}
