import { closeSync, existsSync, fdatasyncSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { decodeFrame, encodeFrame } from '../../shared/protocol/frame-codec.ts';
import { silentLogger, type Logger } from '../logger.ts';

/**
 * A write-ahead journal of what the server accepted since its last checkpoint: round openings, registrations and
 * uploads (sync rounds), teacher contributions and tasks (online). An upload is acked only after its record is on disk
 * (write + fdatasync), so a SIGKILL loses nothing acked; a checkpoint records the journal sequence it covers and replay
 * skips anything at or below it, so nothing is counted twice. Each record is `u32 length · 8-byte sha256 prefix ·
 * msgpack body`: a torn tail (crash mid-append) fails its length or digest and is dropped with a log line.
 */
export interface JournalRecord {
  seq: number;
  kind: string;
  [k: string]: unknown;
}

export interface UploadJournal {
  /** Durably append; returns the record's sequence number. */
  append(kind: string, data: Record<string, unknown>): number;
  /** Records with seq > `after`, in order (the valid prefix of the file). */
  replay(after: number): JournalRecord[];
  /** Drop the records a checkpoint covers (seq ≤ `seq`), keeping any appended while it was being written. */
  compact(seq: number): void;
  /** Continue numbering after a checkpoint's sequence (the journal may have been reset since). */
  advanceTo(seq: number): void;
  /** Sequence of the last appended record (0 = none yet). */
  readonly seq: number;
}

const HEADER = 12;

/** Sequence numbering shared by both journals: numbers go on across checkpoints, never reused. */
abstract class Sequenced {
  protected lastSeq = 0;
  get seq(): number {
    return this.lastSeq;
  }
  advanceTo(seq: number): void {
    this.lastSeq = Math.max(this.lastSeq, seq);
  }
}

function writeFully(fd: number, bytes: Uint8Array, position: number): void {
  let off = 0;
  while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off, position + off);
}

function frameRecord(r: JournalRecord): Uint8Array {
  const body = encodeFrame(r);
  const rec = new Uint8Array(HEADER + body.byteLength);
  new DataView(rec.buffer).setUint32(0, body.byteLength, true);
  rec.set(createHash('sha256').update(body).digest().subarray(0, 8), 4);
  rec.set(body, HEADER);
  return rec;
}

export class FileUploadJournal extends Sequenced implements UploadJournal {
  private fd: number;
  private readonly file: string;

  constructor(dir: string, private readonly log: Logger = silentLogger) {
    super();
    mkdirSync(dir, { recursive: true });
    this.file = path.join(dir, 'journal.log');
    const records = existsSync(this.file) ? this.read() : { records: [], validBytes: 0 };
    this.lastSeq = records.records.at(-1)?.seq ?? 0;
    this.fd = openSync(this.file, existsSync(this.file) ? 'r+' : 'w+');
    // Cut a torn tail now, so new records don't land behind garbage.
    ftruncateSync(this.fd, records.validBytes);
    fdatasyncSync(this.fd);
    this.offset = records.validBytes;
  }

  private offset = 0;

  append(kind: string, data: Record<string, unknown>): number {
    const seq = ++this.lastSeq;
    const rec = frameRecord({ ...data, seq, kind });
    writeFully(this.fd, rec, this.offset);
    fdatasyncSync(this.fd);
    this.offset += rec.byteLength;
    return seq;
  }

  replay(after: number): JournalRecord[] {
    return this.read().records.filter((r) => r.seq > after);
  }

  compact(seq: number): void {
    const keep = this.read().records.filter((r) => r.seq > seq);
    if (keep.length === 0) {
      ftruncateSync(this.fd, 0);
      fdatasyncSync(this.fd);
      this.offset = 0;
      return;
    }
    // Records appended while the checkpoint was written survive: rewrite them to a temp file and rename it in place.
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, 'w');
    let off = 0;
    for (const r of keep) {
      const rec = frameRecord(r);
      writeFully(fd, rec, off);
      off += rec.byteLength;
    }
    fdatasyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.file);
    // The rename itself must be durable, or a power loss could bring back the old file without later records.
    const dir = openSync(path.dirname(this.file), 'r');
    fsyncSync(dir);
    closeSync(dir);
    closeSync(this.fd);
    this.fd = openSync(this.file, 'r+');
    this.offset = off;
  }

  close(): void {
    closeSync(this.fd);
  }

  private read(): { records: JournalRecord[]; validBytes: number } {
    const buf = readFileSync(this.file);
    const records: JournalRecord[] = [];
    let off = 0;
    while (off < buf.byteLength) {
      const problem = (() => {
        if (buf.byteLength - off < HEADER) return 'truncated header';
        const len = buf.readUInt32LE(off);
        if (buf.byteLength - off - HEADER < len) return `truncated record (${len} B announced)`;
        const body = buf.subarray(off + HEADER, off + HEADER + len);
        if (!createHash('sha256').update(body).digest().subarray(0, 8).equals(buf.subarray(off + 4, off + HEADER))) return 'digest mismatch';
        try {
          records.push(decodeFrame(body) as JournalRecord);
        } catch (e) {
          return `undecodable (${(e as Error).message})`;
        }
        off += HEADER + len;
        return null;
      })();
      if (problem) {
        this.log.warn({ file: this.file, byte: off, dropped: buf.byteLength - off, problem }, `journal ${this.file}: torn or corrupt record at byte ${off} skipped with the ${buf.byteLength - off} B after it: ${problem}`);
        break;
      }
    }
    return { records, validBytes: off };
  }
}

/** For servers without a state dir: nothing survives the process anyway. */
export class MemoryUploadJournal extends Sequenced implements UploadJournal {
  private records: JournalRecord[] = [];
  append(kind: string, data: Record<string, unknown>): number {
    const seq = ++this.lastSeq;
    this.records.push({ ...data, seq, kind });
    return seq;
  }
  replay(after: number): JournalRecord[] {
    return this.records.filter((r) => r.seq > after);
  }
  compact(seq: number): void {
    this.records = this.records.filter((r) => r.seq > seq);
  }
}
