import { promises as fs } from 'node:fs';

/**
 * Crash-safe writes for the state dir and exports. A file's bytes are durable only once the file is fsynced, and a
 * rename (or a new name) only once its directory is: so write temp → fsync → rename → fsync the directory, and a
 * crash at any point leaves either the old file or the whole new one, never a torn mix.
 */

/** Write `bytes` to `file` (created or truncated) and fsync it before resolving. */
export async function writeSynced(file: string, bytes: Uint8Array): Promise<void> {
  const fh = await fs.open(file, 'w');
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Put `bytes` at `file` whole or not at all (a fsynced temp file renamed over it); syncDir after it keeps the name. */
export async function replaceFile(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeSynced(tmp, bytes);
  await fs.rename(tmp, file);
}

/** fsync a directory: the names created, renamed or removed in it so far survive a crash. */
export async function syncDir(dir: string): Promise<void> {
  const dh = await fs.open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
