import pino, { type DestinationStream, type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

export type { Logger };

export interface LogOptions {
  /** pino level: trace | debug | info | warn | error | fatal | silent. */
  level?: string;
  /** pretty: one human line a record (time, level, part, message); json: one JSON object a line; auto: pretty on a TTY. */
  format?: 'auto' | 'pretty' | 'json';
  /** Shown with every line (pretty: in parentheses), e.g. the client's id. */
  name?: string;
  /** Where lines go; default stdout. */
  destination?: DestinationStream & { isTTY?: boolean };
}

/**
 * The logger of the server and the client CLIs: pino, JSON lines for log shippers, pretty lines in a terminal.
 * Both write synchronously, so the last lines before an exit are not lost. Structured fields (clientId, round …)
 * stay in the JSON; pretty lines show the message (and an error's stack), which already says what the fields say.
 */
export function createLogger(o: LogOptions = {}): Logger {
  const dest = o.destination ?? process.stdout;
  const pretty = o.format === 'pretty' || ((o.format ?? 'auto') === 'auto' && Boolean(dest.isTTY));
  const opts = { level: o.level ?? 'info', ...(o.name ? { name: o.name } : {}) };
  if (!pretty) return pino(opts, dest === process.stdout ? pino.destination({ dest: 1, sync: true }) : dest);
  const stream = pinoPretty({
    colorize: Boolean(dest.isTTY),
    translateTime: 'SYS:HH:MM:ss',
    ignore: 'pid,hostname',
    hideObject: true,
    sync: true,
    destination: dest === process.stdout ? 1 : (dest as never),
    messageFormat: (log, key) => {
      const err = log.err as { stack?: string; message?: string } | undefined;
      const msg = String(log[key] ?? '');
      return err ? `${msg}${msg ? ': ' : ''}${err.stack ?? err.message ?? ''}` : msg;
    },
  });
  return pino(opts, stream);
}

/** For embedding and tests that want no output. */
export const silentLogger: Logger = pino({ level: 'silent' });

/**
 * A pino logger whose records reach a plain line callback as their message (plus the error's stack, if any): for
 * embedders and tests that pass `log: (line) => …` and read what was said.
 */
export function linesLogger(write: (line: string) => void, level = 'info'): Logger {
  return pino(
    { level },
    {
      write(json: string) {
        const r = JSON.parse(json) as { msg?: string; err?: { stack?: string; message?: string } };
        const err = r.err?.stack ?? r.err?.message;
        write(err ? `${r.msg ?? ''}: ${err}` : (r.msg ?? ''));
      },
    },
  );
}

/** What an embedder may pass as `log`: a pino logger, a line callback, or nothing (silent unless FEDISTILL_LOG_LEVEL). */
export type LogSink = Logger | ((line: string) => void) | undefined;

export function toLogger(sink: LogSink): Logger {
  if (typeof sink === 'function') return linesLogger(sink);
  if (sink) return sink;
  const level = process.env.FEDISTILL_LOG_LEVEL;
  return level ? createLogger({ level, format: (process.env.FEDISTILL_LOG_FORMAT as LogOptions['format']) ?? 'auto' }) : silentLogger;
}
