import type { Setting } from './types.ts';

/** tfjs backends a command may ask for (shared/compute/backend.ts's BACKEND_PREFERENCES; a test keeps them equal). */
export const BACKENDS = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Settings more than one command takes. */
export const COMMON_SETTINGS: readonly Setting[] = [
  {
    key: 'seed',
    flag: 'seed',
    type: 'int',
    range: { min: 0 },
    default: 1,
    arg: 'N',
    commands: ['server', 'client', 'simulate'],
    help: {
      server: 'seed for client selection, the proxy rows held out and the student init',
      client: 'seed for local training and (with --fashion-mnist-part) the split',
      simulate: 'seed for split, partitions, models',
    },
    group: 'runtime',
  },
  {
    key: 'dataDir',
    flag: 'data-dir',
    type: 'string',
    default: undefined,
    // The Fashion-MNIST finder (datasets/fashion-mnist.ts) reads it too, for library callers that name no dir; the
    // client's --data-dir is its private data, so there the variable only locates Fashion-MNIST for a part.
    env: { server: 'FEDISTILL_DATA_DIR', simulate: 'FEDISTILL_DATA_DIR' },
    arg: 'DIR',
    commands: ['server', 'client', 'simulate'],
    help: {
      server: 'Fashion-MNIST idx files for --proxy/--validation fashion-mnist (else cache, Debian package, download, subset)',
      client: 'private data: idx files train-images-idx3-ubyte(.gz) + train-labels-idx1-ubyte(.gz) (+ optional t10k-* for local accuracy), or one sub-folder of images per class',
      simulate: 'Fashion-MNIST idx files (else cache, Debian package, download, subset)',
    },
    group: 'data',
  },
  {
    key: 'backend',
    flag: 'backend',
    type: 'enum',
    values: BACKENDS,
    default: 'auto',
    env: 'FEDISTILL_BACKEND',
    arg: 'B',
    commands: ['server', 'client', 'simulate'],
    help: 'TensorFlow.js backend; auto = the fastest that loads',
    group: 'runtime',
  },
  {
    key: 'logLevel',
    flag: 'log-level',
    type: 'enum',
    values: LOG_LEVELS,
    default: 'info',
    defaults: { simulate: 'silent' },
    env: 'FEDISTILL_LOG_LEVEL',
    arg: 'L',
    commands: ['server', 'client', 'simulate'],
    help: {
      server: 'least severe log lines shown',
      client: 'least severe log lines shown',
      simulate: "the embedded server's log lines (the report itself always prints)",
    },
    group: 'runtime',
  },
  {
    key: 'logFormat',
    flag: 'log-format',
    type: 'enum',
    values: LOG_FORMATS,
    default: 'auto',
    env: 'FEDISTILL_LOG_FORMAT',
    arg: 'F',
    commands: ['server', 'client', 'simulate'],
    help: 'pretty (human lines) or json (one JSON object a line); auto = pretty when stdout is a terminal',
    group: 'runtime',
  },
];
