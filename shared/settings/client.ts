import { MODEL_KINDS } from '../protocol/model-kinds.ts';
import { LOGIT_CODECS } from '../tensor/logit-codec.ts';
import { SIMULATE_SETTINGS } from './simulate.ts';
import type { Setting } from './types.ts';

/** --fashion-mnist-part: client `index` of `of` of the Dirichlet(`alpha`) split `fedistill simulate` makes. */
export interface FashionMnistPart {
  index: number;
  of: number;
  alpha: number;
}

/** simulate's --alpha default: a part without ALPHA is split as simulate splits by default. */
const SIMULATE_ALPHA = SIMULATE_SETTINGS.find((s) => s.key === 'alpha')!.default as number;

/** 'I/N' or 'I/N:ALPHA' → { index: I, of: N, alpha }, checked (I < N, α > 0). The one parser of the flag. */
export function parseFashionMnistPart(raw: string): FashionMnistPart {
  const m = /^(\d+)\/(\d+)(?::(\d*\.?\d+))?$/.exec(raw.trim());
  if (!m) throw new Error(`'${raw}' is not I/N or I/N:ALPHA (e.g. 3/10 or 3/10:0.5)`);
  const [index, of, alpha] = [Number(m[1]), Number(m[2]), m[3] === undefined ? SIMULATE_ALPHA : Number(m[3])];
  if (of < 1) throw new Error(`'${raw}': N must be at least 1`);
  if (index >= of) throw new Error(`'${raw}': client index ${index} is not in [0, ${of - 1}]`);
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw new Error(`'${raw}': ALPHA ${m[3]} is not in (0, ∞)`);
  return { index, of, alpha };
}

/**
 * What a client is told: the server's address and token, who it is, its architecture and codec, and where its data is.
 * (Local epochs, batch size and learning rate come from the server with each round.)
 */
export const CLIENT_SETTINGS: readonly Setting[] = [
  {
    key: 'url',
    flag: 'url',
    type: 'string',
    pattern: /^(https?|wss?):\/\/[^\s/]+.*$/,
    patternText: 'an http:// or https:// URL',
    default: 'http://127.0.0.1:8080',
    env: 'FEDISTILL_URL',
    arg: 'URL',
    commands: ['client'],
    help: 'aggregator URL',
    group: 'access',
  },
  {
    key: 'token',
    flag: 'token',
    type: 'string',
    default: '',
    env: 'FEDISTILL_TOKEN',
    arg: 'T',
    commands: ['server', 'client'],
    help: {
      server: 'shared secret every client presents (one of --token, --credentials or --insecure-no-auth is required)',
      client: "the server's client token, or this client's credential (fedistill credential issue)",
    },
    group: 'access',
  },
  {
    key: 'id',
    flag: 'id',
    type: 'string',
    pattern: /^[A-Za-z0-9_.:-]{1,128}$/, // the protocol's rule for hello.clientId (shared/protocol/schemas.ts)
    patternText: "1 to 128 letters, digits and '_.:-'",
    default: undefined,
    defaultText: 'hostname-pid',
    arg: 'ID',
    commands: ['client'],
    help: 'stable client id: a client that reconnects with it is the same participant',
    group: 'access',
  },
  {
    key: 'model',
    flag: 'model',
    type: 'enum',
    values: MODEL_KINDS,
    default: 'cnn',
    arg: 'M',
    commands: ['client'],
    help: "local architecture (may differ from the server's student)",
    group: 'training',
  },
  {
    key: 'codec',
    flag: 'codec',
    type: 'enum',
    values: LOGIT_CODECS,
    default: 'topk8',
    arg: 'C',
    commands: ['client', 'simulate'],
    help: 'how uploaded logits are encoded (topk8, the demo: top-3 logits a row as 8-bit gaps below the top-1, 4.5 B; topk: the same in fp16, 13 B)',
    group: 'training',
  },
  {
    key: 'topK',
    flag: 'topk',
    type: 'int',
    range: { min: 1, max: 65536 },
    default: undefined,
    defaultText: 'max(3, classes/10)',
    arg: 'K',
    commands: ['client', 'simulate'],
    help: 'with --codec topk or topk8: logits kept per row (fewer bytes a row, so more rows fit the same uplink)',
    group: 'training',
  },
  {
    key: 'fashionMnistPart',
    flag: 'fashion-mnist-part',
    type: 'custom',
    parse: parseFashionMnistPart,
    format: (v) => {
      const p = v as FashionMnistPart;
      return `${p.index}/${p.of}:${p.alpha}`;
    },
    default: undefined,
    arg: 'I/N[:ALPHA]',
    commands: ['client'],
    help:
      "instead of --data-dir, for test benches: client I of N of the Dirichlet split 'fedistill simulate' makes (ALPHA 0.5); " +
      "with simulate's id for it, --id client-NN (I in two digits: client-03), it trains exactly as simulate's client I " +
      '(Fashion-MNIST found as simulate finds it: env FEDISTILL_DATA_DIR, cache, Debian package, download, subset)',
    group: 'data',
  },
  {
    key: 'proxySize',
    flag: 'proxy-size',
    type: 'int',
    range: { min: 1 },
    default: undefined,
    defaults: { simulate: 10000 },
    defaultText: '10000; a sixth of a smaller training set',
    arg: 'N',
    commands: ['client', 'simulate'],
    help: {
      client: "with --fashion-mnist-part: the server's proxy size (rows held out of the split)",
      simulate: 'training rows held out as the public proxy set',
    },
    group: 'data',
  },
  {
    // One row for both: a --fashion-mnist-part client scores itself on the same test rows as simulate's clients, so
    // the "client acc" a server reports matches the simulation's.
    key: 'clientEvalSize',
    flag: 'client-eval',
    type: 'int',
    range: { min: 0 },
    default: 1000,
    arg: 'N',
    commands: ['client', 'simulate'],
    help: {
      client: 'with --fashion-mnist-part: the first N Fashion-MNIST test rows the client scores its own model on each round (0 = off)',
      simulate: 'test rows each client scores its own model on (0 = off)',
    },
    group: 'data',
  },
  {
    key: 'proxyCache',
    flag: 'proxy-cache',
    type: 'string',
    default: undefined,
    defaultText: '~/.cache/fedistill/proxy',
    arg: 'DIR',
    commands: ['client'],
    help: 'where the downloaded proxy set is kept (checked by hash)',
    group: 'data',
  },
  {
    key: 'ca',
    flag: 'ca',
    type: 'string',
    default: undefined,
    defaultText: "the system's CAs",
    env: 'FEDISTILL_CA',
    arg: 'FILE',
    commands: ['client'],
    help: "PEM file of the CA that signed an https:// server's certificate (a private CA); the socket and every HTTP request trust it",
    group: 'access',
  },
  {
    key: 'resumeDir',
    flag: 'resume-dir',
    type: 'string',
    default: undefined,
    defaultText: '~/.cache/fedistill/resume',
    arg: 'DIR',
    commands: ['client'],
    help: "where the resume token of each server + id is kept (0600): a restarted client takes its offline id back with it",
    group: 'access',
  },
  {
    key: 'clientPrivacy.epsilon',
    flag: 'dp-budget',
    type: 'float',
    range: { min: 0 },
    default: 0,
    arg: 'E',
    commands: ['client'],
    help: "this client's differential-privacy budget: it sends no label histogram and declines any round without DP noise or past ε = E in all (kept with the resume token across restarts); 0 = none",
    group: 'privacy',
  },
  {
    key: 'clientPrivacy.delta',
    flag: 'dp-delta',
    type: 'float',
    range: { min: 0, minOpen: true, max: 1, maxOpen: true },
    default: 1e-5,
    arg: 'D',
    commands: ['client'],
    help: 'δ of the budget',
    group: 'privacy',
  },
  {
    key: 'giveUpAfterS',
    flag: 'give-up-after',
    type: 'float',
    range: { min: 0 },
    default: 60,
    arg: 'S',
    commands: ['client'],
    help: 'exit with an error after S seconds unable to reach the server (0 = keep trying forever)',
    group: 'access',
  },
];
