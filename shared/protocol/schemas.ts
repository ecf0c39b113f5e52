/**
 * The wire protocol's single source of truth: one zod schema per message. The TypeScript types (messages.ts), the
 * validators (validate.ts) and the field tables of docs/protocol.md (scripts/protocol-tables.mjs) all come from here.
 *
 * The schemas check *structure* (types, ranges, lengths of short lists). Content checks that must walk a large binary
 * payload — every logit finite, codec byte lengths, index ranges, weight sizes — are done once, outside zod, by
 * validate.ts (a 16 MiB logits frame is never walked element by element here). Typed-array fields accept msgpack
 * `bin` bytes (little-endian elements) or msgpackr's typed-array extension; see typed-arrays.ts.
 *
 * Each field's `.describe()` text is its documentation: it is what the generated tables in docs/protocol.md show.
 * Optional fields may be omitted or sent as msgpack nil. Unknown fields are ignored (and dropped), so adding an
 * optional field is a compatible change (see "Versioning" in docs/protocol.md).
 */
import { z } from 'zod';
import type { WeightCodecName } from '../models/weight-codec.ts';
import type { LogitCodecName } from '../tensor/logit-codec.ts';
import type { FrameShape } from './frame-scan.ts';
import { MODEL_KINDS } from './model-kinds.ts';
import { ROW_ENCODINGS } from './row-set.ts';
import { asTypedArray, bytesOf, describeValue } from './typed-arrays.ts';

const MAX_INT = Number.MAX_SAFE_INTEGER;

// ---- building blocks ----------------------------------------------------------------------------------------------

/** An integer in [min, max]; every failure says what is expected. */
function int(min: number, max = MAX_INT) {
  const error = `must be an integer in [${min}, ${max === MAX_INT ? '2^53-1' : max}]`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

/** A finite number (msgpack float or int), optionally ≥ min. */
function finite(min?: number) {
  const error = min === undefined ? 'must be a finite number' : `must be a finite number ≥ ${min}`;
  const n = z.number({ error });
  return min === undefined ? n : n.min(min, { error });
}

function str(maxLength: number, pattern?: RegExp, what = '') {
  const error = `must be a non-empty string of at most ${maxLength} characters${what}`;
  const s = z.string({ error }).min(1, { error }).max(maxLength, { error });
  return pattern ? s.regex(pattern, { error }) : s;
}

/** An optional field: absent, or msgpack nil (other languages' encoders often write nil for "none"). */
function opt<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === null ? undefined : v), schema.optional()).optional();
}

interface TypedArrayClass<T extends ArrayBufferView> {
  new (length: number): T;
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): T;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
}

/** A typed-array field: msgpack bin bytes (little-endian elements) or msgpackr's typed-array extension of `Class`. */
function typedArray<T extends ArrayBufferView>(Class: TypedArrayClass<T>, what: string) {
  const expected = Class.BYTES_PER_ELEMENT === 1 ? 'bytes (msgpack bin)' : `${what}: msgpack bin of ${Class.BYTES_PER_ELEMENT}-byte little-endian values, or a ${Class.name}`;
  return z.preprocess(
    (v) => asTypedArray(v, Class),
    z.custom<T>((v) => v instanceof Class, { error: (iss) => `must be ${expected}, got ${describeValue(iss.input)}` })
      .meta({ wire: Class.BYTES_PER_ELEMENT === 1 ? 'bin' : `bin (${Class.name.replace('Array', '').toLowerCase()} LE) or ${Class.name}` }),
  );
}

// Explicit element types: the fields hold views over any ArrayBufferLike (e.g. a Node Buffer's pool).
const float32Array = () => typedArray<Float32Array>(Float32Array, 'float32 values');
const uint32Array = () => typedArray<Uint32Array>(Uint32Array, 'uint32 values');
const bytes = () => typedArray<Uint8Array>(Uint8Array, 'bytes');

const shape3 = z.tuple([int(1, 1 << 16), int(1, 1 << 16), int(1, 1 << 16)], { error: 'must be a list of 3 positive integers' });

// ---- shared parts ---------------------------------------------------------------------------------------------------

export const ModelKindSchema = z.enum(MODEL_KINDS, { error: `must be one of ${MODEL_KINDS.join(', ')}` });

const CODEC_NAMES = ['fp32', 'fp16', 'int8', 'topk', 'topk8'] as const;
// Compile-time check that the codec module and the protocol agree on the codec names.
const codecNamesAgree: [LogitCodecName] extends [(typeof CODEC_NAMES)[number]] ? true : never = true;
void codecNamesAgree;
export const LogitCodecSchema = z.enum(CODEC_NAMES, { error: `must be one of ${CODEC_NAMES.join(', ')}` });

/** The typed-array class each codec's `data` elements have, when a peer sends them as a typed-array extension. */
const DATA_ELEMENT: Record<LogitCodecName, TypedArrayClass<ArrayBufferView>> = { fp32: Float32Array, fp16: Uint16Array, int8: Int8Array, topk: Uint16Array, topk8: Uint8Array };

/**
 * Bring an encoded matrix's fields to the codec's in-memory types: `data` → bytes (a typed array of the codec's own
 * element type — Float32Array for fp32, Uint16Array for fp16/topk, Int8Array for int8 — is read as its bytes);
 * `scales`/`offsets` → Float32Array; `indices` bytes → Uint8Array (rows·k bytes) or Uint16Array (2·rows·k bytes).
 */
function normaliseMatrix(x: unknown): unknown {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || ArrayBuffer.isView(x)) return x;
  const e: Record<string, unknown> = { ...(x as Record<string, unknown>) };
  // Own keys only: a peer's codec 'toString' or '__proto__' must not find Object.prototype's members.
  const element = typeof e.codec === 'string' && Object.hasOwn(DATA_ELEMENT, e.codec) ? DATA_ELEMENT[e.codec as LogitCodecName] : undefined;
  if (element && e.data instanceof element) e.data = bytesOf(e.data as ArrayBufferView);
  for (const f of ['scales', 'offsets']) if (e[f] !== undefined && e[f] !== null) e[f] = asTypedArray(e[f], Float32Array);
  const { rows, k, indices } = e;
  if (indices instanceof Uint8Array && typeof rows === 'number' && typeof k === 'number' && rows * k > 0 && indices.byteLength === 2 * rows * k) {
    e.indices = asTypedArray(indices, Uint16Array);
  }
  return e;
}

export const EncodedMatrixSchema = z.preprocess(
  normaliseMatrix,
  z.object({
    codec: LogitCodecSchema.describe('Codec of the payload (see "Logit codecs")'),
    rows: int(0).describe('Matrix rows (one per proxy row asked for)'),
    cols: int(1).describe('Matrix columns (classes)'),
    data: bytes().describe('Payload bytes: fp32: 4·rows·cols; fp16: 2·rows·cols; int8: rows·cols; topk: 2·rows·k; topk8: rows·(k − 1 + (k < cols ? 1 : 0)) gap codes'),
    scales: opt(float32Array()).describe('int8 only: rows float32 quantisation steps'),
    offsets: opt(float32Array()).describe('int8: rows float32 row minimums; topk: rows float32 "rest" values'),
    k: opt(int(1)).describe('topk, topk8: entries kept per row, the sender\'s choice of 1 ≤ k ≤ cols (the SDK: min(cols, max(3, ⌈cols/10⌉)))'),
    indices: opt(
      z.custom<Uint8Array | Uint16Array>((v) => v instanceof Uint8Array || v instanceof Uint16Array, {
        error: (iss) => `must be bytes (1 per index) or 2-byte little-endian indices, got ${describeValue(iss.input)}`,
      }).meta({ wire: 'bin (uint8, or uint16 LE) or Uint16Array' }),
    ).describe('topk, topk8: rows·k column ids, best first: 1 byte each if cols ≤ 256, else 2 bytes little-endian; topk8 with cols ≤ 16: 4 bits each, two a byte (⌈rows·k/2⌉ bytes)'),
    step: opt(
      z.number({ error: 'must be a number in [2^-20, 2^16]' }).min(2 ** -20, { error: 'must be a number in [2^-20, 2^16]' }).max(2 ** 16, { error: 'must be a number in [2^-20, 2^16]' }),
    ).describe('topk8 only: logits per gap code (the SDK: a power of two in [1/256, 1/16])'),
  }),
);

const ROW_ENCODING_ERROR = { error: `must be one of ${ROW_ENCODINGS.join(', ')}` } as const;

/**
 * A sorted set of distinct proxy rows in a compact form (row-set.ts): what `round.rows` carries instead of the uint32
 * list `round.indices` for a client that decodes it. Its type is `EncodedRows`; its payload is checked by validate.ts.
 */
export const RowSetSchema = z.object({
  encoding: z.enum(ROW_ENCODINGS, ROW_ENCODING_ERROR).describe(
    '`bitmap`: bit i set ⇔ row i is in the set (bit i mod 8 of byte ⌊i/8⌋, least significant first); `gaps`: one unsigned LEB128 varint per row, the first row, then each row − the previous − 1 (see "Row sets")',
  ),
  proxyCount: int(0, 2 ** 32).describe('Rows of the proxy set the rows index (`welcome.proxy.count`): every row is below it, and a receiver refuses a set over another size'),
  data: bytes().describe('bitmap: exactly ⌈proxyCount/8⌉ bytes, bits past proxyCount 0; gaps: minimal varints of ≤ 5 bytes, rows < proxyCount'),
});

const tensorName = () => str(256).describe('Weight name (informative; weights are matched by position)');
const tensorShape = () =>
  z.array(int(1, 1 << 28), { error: 'must be a list of positive integers' }).max(8, { error: 'must have at most 8 dimensions' }).describe('Dimensions');
const TENSOR_LIST = { error: 'must be a list of tensors' } as const;

/** An fp32 tensor: what uploads (FedAvg), checkpoints and exports carry. Its type is `WireTensor`. */
export const WireTensorSchema = z.object({
  name: tensorName(),
  shape: tensorShape(),
  encoding: opt(z.literal('fp32', { error: "must be 'fp32' (or absent): uploaded weights are not compressed" })).describe("Absent or 'fp32'"),
  data: float32Array().describe('The product of `shape` float32 values, row-major'),
});

const WEIGHT_ENCODINGS = ['fp32', 'fp16', 'int8'] as const;
// Compile-time check that the codec module and the protocol agree on the encodings.
const weightCodecsAgree: [WeightCodecName] extends [(typeof WEIGHT_ENCODINGS)[number]] ? ((typeof WEIGHT_ENCODINGS)[number] extends WeightCodecName ? true : never) : never = true;
void weightCodecsAgree;

/** A peer's typed-array extension of the encoding's own element type (Uint16Array for fp16, Int8Array for int8) is read as its bytes. */
function normaliseTensor(x: unknown): unknown {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || ArrayBuffer.isView(x)) return x;
  const t: Record<string, unknown> = { ...(x as Record<string, unknown>) };
  if ((t.encoding === 'fp16' && t.bytes instanceof Uint16Array) || (t.encoding === 'int8' && t.bytes instanceof Int8Array)) t.bytes = bytesOf(t.bytes);
  return t;
}

/**
 * A tensor of a model sent to clients (a round's student, the final student): fp32 like `WireTensor`, or compressed
 * (fp16 / per-channel int8, shared/models/weight-codec.ts). Its type is `EncodedTensor`. Which fields each encoding
 * needs is checked here; their lengths and values by validate.ts (checkWireTensors).
 */
export const EncodedTensorSchema = z.preprocess(
  normaliseTensor,
  z
    .object({
      name: tensorName(),
      shape: tensorShape(),
      encoding: opt(z.enum(WEIGHT_ENCODINGS, { error: `must be one of ${WEIGHT_ENCODINGS.join(', ')}` })).describe(
        "How the values travel: absent or 'fp32' (`data`), 'fp16' or 'int8' (`bytes`, see \"Weight encodings\")",
      ),
      data: opt(float32Array()).describe('fp32 only: the product of `shape` float32 values, row-major'),
      bytes: opt(bytes()).describe('fp16: 2 bytes per value (binary16 LE); int8: 1 byte per value (two\'s complement); row-major'),
      scales: opt(float32Array()).describe('int8 only: float32 steps, one per output channel (the last axis of a tensor of rank ≥ 2), else one'),
    })
    .superRefine((t, ctx) => {
      const encoding = t.encoding ?? 'fp32';
      const needs = { fp32: ['data'], fp16: ['bytes'], int8: ['bytes', 'scales'] }[encoding];
      for (const f of ['data', 'bytes', 'scales'] as const) {
        const present = t[f] !== undefined;
        if (needs.includes(f) && !present) ctx.addIssue({ code: 'custom', path: [f], message: `must be present for encoding '${encoding}'` });
        if (!needs.includes(f) && present) ctx.addIssue({ code: 'custom', path: [f], message: `must be absent for encoding '${encoding}'` });
      }
    }),
);

export const WireModelSchema = z.object({
  kind: ModelKindSchema.describe('Architecture'),
  version: int(0).describe('Student version (round or online publish count) these weights are from'),
  weights: z.array(EncodedTensorSchema, TENSOR_LIST).min(1, { error: 'must hold at least one tensor' }).max(1000, { error: 'must hold at most 1000 tensors' }).describe('Tensors in the architecture\'s weight order'),
});

/** Every field is optional: under `privacy` or `secagg` the SDK sends none, since each is computed on private data. */
export const ClientRoundStatsSchema = z.object({
  trainLoss: opt(finite()).describe('Mean training loss of the local step'),
  trainAccuracy: opt(finite()).describe('Training accuracy of the local step, in [0, 1]'),
  trainSeconds: opt(finite(0)).describe('Wall time of the local step, seconds'),
  evalAccuracy: opt(finite()).describe('Accuracy on a labelled evaluation set the client holds, if any'),
});

export const ProxyInfoSchema = z.object({
  id: str(128).describe('Proxy set id: the `:id` of GET /proxy/:id'),
  hash: str(128).describe('sha256 (lower-case hex) of the proxy images tensor\'s bytes (see "Proxy set")'),
  count: int(0).describe('Rows (images) in the proxy set'),
  shape: shape3.describe('[height, width, channels] of one image'),
  numClasses: int(1).describe('Classes'),
  path: str(1024).describe('HTTP path that serves the proxy set document'),
});

export const ERROR_CODES = [
  'bad-frame',
  'too-large',
  'bad-message',
  'protocol-version',
  'unauthorized',
  'not-registered',
  'unknown-round',
  'stale-round',
  'not-selected',
  'duplicate',
  'late',
  'wrong-proxy',
  'bad-shape',
  'non-finite',
  'resync',
  'rate-limited',
  'too-many-clients',
  'hello-timeout',
  'internal',
] as const;
export const ErrorCodeSchema = z.enum(ERROR_CODES, { error: 'must be a known error code' });

// ---- client → server ----------------------------------------------------------------------------------------------

/** The largest sample count (and class count) a client may claim: bounds what a liar can say before any clamping. */
export const MAX_SAMPLE_COUNT = 1e9;

export const HelloSchema = z.object({
  type: z.literal('hello'),
  protocol: int(0, 1e6).describe('Protocol version the client speaks (currently 1)'),
  clientId: str(128, /^[A-Za-z0-9_.:-]+$/, ", using only letters, digits and '_.:-'").describe('Stable id chosen by the client; a reconnect with the same id is the same participant'),
  model: ModelKindSchema.describe('The client\'s architecture; it decides what each `round` carries (see "Choosing `model`")'),
  numSamples: int(0, MAX_SAMPLE_COUNT).describe('Private training-set size (sample-count weighting); 0 = holds no data now'),
  classCounts: opt(z.array(int(0, MAX_SAMPLE_COUNT), { error: 'must be a list of non-negative integers' }).max(10000, { error: 'must have at most 10000 entries' })).describe('Private label histogram, numClasses counts (enables per-class teacher weighting)'),
  codec: LogitCodecSchema.describe('Logit codec the client will upload with (informative)'),
  resumeToken: opt(str(128)).describe('Token from a previous `welcome` for this clientId: lets a reconnect replace a still-open connection'),
  backend: opt(str(32, /^[a-z0-9-]+$/, ', lower-case')).describe('Training backend name (e.g. wasm, webgpu): shown on dashboards'),
  weightEncodings: opt(z.array(z.enum(WEIGHT_ENCODINGS, { error: `must be one of ${WEIGHT_ENCODINGS.join(', ')}` }), { error: 'must be a list of weight encodings' }).max(8, { error: 'must have at most 8 entries' })).describe(
    'Weight encodings the client decodes (see "Weight encodings"); absent = fp32 only. The server compresses the student it sends only for clients that list its --student-codec',
  ),
  rowEncodings: opt(z.array(z.enum(ROW_ENCODINGS, ROW_ENCODING_ERROR), { error: 'must be a list of row encodings' }).max(8, { error: 'must have at most 8 entries' })).describe(
    'Row-set forms the client decodes (see "Row sets"); absent = none. The server sends a round\'s proxy rows as `rows` in the smallest listed form, instead of `indices`, only to clients that list one',
  ),
});

export const LogitsSchema = z.object({
  type: z.literal('logits'),
  round: int(0).describe('Round (online: task number) the upload answers'),
  proxyHash: str(128).describe('`welcome.proxy.hash` of the proxy set the logits were computed on'),
  logits: EncodedMatrixSchema.describe('Logits, row i for proxy row `round.indices[i]`, indices.length × numClasses'),
  stats: ClientRoundStatsSchema.describe('Scalars about the local step'),
  values: opt(z.enum(['logits', 'probs'], { error: 'must be logits or probs' })).describe('What the matrix holds: `logits` (default) or `probs`, the noisy probabilities of a round with `privacy` (rows may leave the simplex)'),
});

export const WeightsSchema = z.object({
  type: z.literal('weights'),
  round: int(0).describe('Round the upload answers'),
  numSamples: int(0, MAX_SAMPLE_COUNT).describe('Samples the weights were trained on (FedAvg weighting)'),
  weights: z.array(WireTensorSchema, TENSOR_LIST).min(1, { error: 'must hold at least one tensor' }).max(1000, { error: 'must hold at most 1000 tensors' }).describe('Tensors in the architecture\'s weight order, fp32'),
  stats: ClientRoundStatsSchema.describe('Scalars about the local step'),
});

export const DeclineSchema = z.object({
  type: z.literal('decline'),
  round: int(0).describe('Round the client will not answer'),
  reason: z.enum(['privacy-budget', 'no-privacy'], { error: 'must be privacy-budget or no-privacy' }).describe('`privacy-budget`: one more upload would pass its DP budget (it will not take part again); `no-privacy`: the round has no DP noise and the client requires it'),
});

// ---- secure aggregation (docs/privacy.md): client → server ---------------------------------------------------------

/** x25519 public keys are 32 bytes. */
const key32 = () => bytes().refine((b) => b.byteLength === 32, { error: 'must be 32 bytes (an x25519 public key)' });
const clientIdField = () => str(128, /^[A-Za-z0-9_.:-]+$/, ", using only letters, digits and '_.:-'");
/** Rosters and share lists hold one entry per participant of a round: bounded by the largest federation allowed. */
export const MAX_SECAGG_PARTIES = 10_000;
const secaggHead = {
  round: int(0).describe('Round the message belongs to'),
  session: str(128).describe('`round.secagg.session` of that round'),
};

export const SecAggKeysSchema = z.object({
  type: z.literal('sa-keys'),
  ...secaggHead,
  cPk: key32().describe('x25519 public key for the sealed shares sent to this client'),
  sPk: key32().describe('x25519 public key of the pairwise masks'),
});

export const SecAggSharesSchema = z.object({
  type: z.literal('sa-shares'),
  ...secaggHead,
  shares: z.array(z.object({
    to: clientIdField().describe('Recipient client id'),
    ciphertext: bytes().refine((b) => b.byteLength <= 4096, { error: 'must be at most 4096 bytes' }).describe('Sealed Shamir shares of the sender\'s mask key and self-mask seed (ChaCha20-Poly1305)'),
  }), { error: 'must be a list of sealed shares' }).max(MAX_SECAGG_PARTIES, { error: `must have at most ${MAX_SECAGG_PARTIES} entries` }).describe('One sealed share per other roster member'),
});

export const SecAggMaskedSchema = z.object({
  type: z.literal('sa-masked'),
  ...secaggHead,
  proxyHash: str(128).describe('`welcome.proxy.hash` of the proxy set the values were computed on'),
  masked: uint32Array().describe('The masked fixed-point vector, `round.secagg.length` uint32 values (mod 2^32)'),
  stats: ClientRoundStatsSchema.describe('Scalars about the local step'),
});

export const SecAggRevealSchema = z.object({
  type: z.literal('sa-reveal'),
  ...secaggHead,
  reveals: z.array(z.object({
    of: clientIdField().describe('Whose secret this share is of'),
    kind: z.enum(['b', 's'], { error: 'must be b or s' }).describe('`b`: a survivor\'s self-mask seed; `s`: a dropped client\'s mask key'),
    share: bytes().refine((b) => b.byteLength <= 256, { error: 'must be at most 256 bytes' }).describe('The Shamir share'),
  }), { error: 'must be a list of shares' }).max(MAX_SECAGG_PARTIES, { error: `must have at most ${MAX_SECAGG_PARTIES} entries` }).describe('One share per survivor (b) and per dropped client (s), as `sa-unmask` asked'),
});

// ---- server → client ----------------------------------------------------------------------------------------------

export const WelcomeSchema = z.object({
  type: z.literal('welcome'),
  protocol: int(0, 1e6).describe('Protocol version the server speaks'),
  clientId: str(128).describe('The id the client registered as'),
  resumeToken: str(128).describe('Secret for this clientId: send it in later hellos (reconnects)'),
  serverVersion: str(64).describe('Server software version (informative)'),
  strategy: str(64).describe('Strategy name: ensemble, mutual, online or fedavg'),
  proxy: ProxyInfoSchema.describe('The public proxy set'),
  student: z.object({
    kind: ModelKindSchema.describe('Student architecture'),
    numClasses: int(1).describe('Classes'),
    inputShape: shape3.describe('[height, width, channels]'),
  }).describe('The global student'),
});

export const RoundSchema = z.object({
  type: z.literal('round'),
  round: int(0).describe('Round number (online: task number, increasing per server)'),
  strategy: str(64).describe('Strategy name'),
  task: z.enum(['logits', 'weights'], { error: 'must be logits or weights' }).describe('What to upload: `logits` or `weights`'),
  indices: opt(uint32Array()).describe('Proxy rows to compute logits on, in upload row order: for task `logits` this or `rows` (exactly one); absent for `weights`'),
  rows: opt(RowSetSchema).describe('The same proxy rows as a sorted set (see "Row sets"), instead of `indices`, to a client whose `hello.rowEncodings` lists its form and when it is smaller; upload row order is ascending row order'),
  localEpochs: int(0, 1e6).describe('Epochs over the private data'),
  batchSize: int(1, 1e6).describe('Local mini-batch size'),
  learningRate: finite(0).describe('Local Adam learning rate'),
  logitAdjust: opt(z.boolean({ error: 'must be a boolean' })).describe('Train with the logit-adjusted loss: add the log of the client\'s own label prior (from its private labels, add-one smoothed) to the logits inside the loss; uploaded logits stay unadjusted'),
  ntdBeta: opt(finite(0)).describe('FedNTD: weight of not-true distillation from `model`; absent/0 = off'),
  deadline: finite(0).describe('Milliseconds since the Unix epoch (UTC) after which the upload is refused as `late`'),
  model: opt(WireModelSchema).describe('Weights to start from when `model.kind` is the client\'s architecture; tensors may be fp16 or int8 (the server\'s --student-codec, see "Weight encodings")'),
  consensus: opt(z.object({
    indices: opt(uint32Array()).describe('Proxy rows of the soft labels, in `probs` row order: this or `rows` (exactly one)'),
    rows: opt(RowSetSchema).describe('The same rows as a sorted set (as `round.rows`): `probs` rows in ascending row order'),
    probs: EncodedMatrixSchema.describe('Teacher probabilities, one row per index'),
    temperature: finite(0).describe('Distillation temperature'),
    epochs: int(0, 1e6).describe('Epochs to learn the soft labels before private training'),
  })).describe('FedMD: consensus soft labels to learn first (clients whose architecture differs from the student)'),
  mutual: opt(z.object({
    probs: EncodedMatrixSchema.describe('Student probabilities at `temperature` on `indices`'),
    temperature: finite(0).describe('Temperature T'),
    beta: finite(0).describe('Weight β of β·T²·KL(p_student ‖ p_client)'),
  })).describe('Mutual learning: the student\'s probabilities to mimic on `indices`'),
  studentVersion: opt(int(0)).describe('Online: the student version this task was made against'),
  privacy: opt(z.object({
    noiseMultiplier: finite(0).describe('z: the Gaussian noise\'s standard deviation over the upload\'s L2 sensitivity (see docs/privacy.md)'),
    clip: finite(0).describe('L2 clip C: of each probability row (task `logits`), of the whole update (task `weights`)'),
    temperature: finite(0).describe('Task `logits`: the softmax temperature of the probabilities uploaded'),
    noiseShares: int(1).describe('1: the client adds all the noise (local DP); t > 1: it adds 1/t of the variance and secure aggregation sums ≥ t shares'),
    delta: finite(0).describe('δ the server reports ε at'),
    mode: opt(z.enum(['local', 'central', 'distributed'], { error: 'must be local, central or distributed' })).describe('Who the guarantee holds against: `local` (each upload alone, the server included), `central` (the aggregate: the server is trusted), `distributed` (the aggregate, under secure aggregation)'),
  })).describe('Differential privacy: clip and noise the upload (task `logits`: upload `values: probs`)'),
  secagg: opt(z.object({
    session: str(128).describe('Session id, new for every round'),
    threshold: int(2).describe('t: shares needed to reconstruct; the round needs ≥ t clients at every step'),
    scale: finite(1).describe('Fixed-point scale: a value x is sent as round(x·scale) mod 2^32'),
    bound: finite(0).describe('Values are clipped to [−bound, bound] before encoding'),
    length: int(1).describe('Vector length: rows·classes (`probs`) or rows·(classes+1) (`confidence`)'),
    values: z.enum(['probs', 'confidence'], { error: 'must be probs or confidence' }).describe('`probs`: each row\'s probabilities; `confidence`: w·p then w per row, w = exp(−entropy(p))'),
    temperature: finite(0).describe('Softmax temperature of the probabilities'),
  })).describe('Secure aggregation: answer with `sa-keys`, `sa-shares`, `sa-masked`, `sa-reveal` instead of `logits`'),
});

export const AckSchema = z.object({
  type: z.literal('ack'),
  round: int(0).describe('Round of the accepted upload'),
  accepted: z.literal(true).describe('Always true (a refusal is an `error`)'),
  bytes: int(0).describe('Size of the accepted upload frame as received: the whole msgpack frame, not only its logits/weights payload'),
});

export const ErrorSchema = z.object({
  type: z.literal('error'),
  code: ErrorCodeSchema.describe('Machine-readable reason (see "Error codes")'),
  message: z.string({ error: 'must be a string' }).describe('What to fix, for humans'),
  round: opt(int(0)).describe('Round (online: task) the refused upload named, when its `round` field was well-formed (see "Errors and limits")'),
});

export const RoundResultSchema = z.object({
  type: z.literal('round-result'),
  round: int(0).describe('Completed round (online: published student version)'),
  participants: int(0).describe('Uploads aggregated'),
  studentAccuracy: opt(finite()).describe('Student accuracy on the server\'s validation set, in [0, 1], if it has one'),
});

const PublicKeysSchema = z.object({
  clientId: str(128).describe('Client id'),
  cPk: key32().describe('Its share-encryption public key'),
  sPk: key32().describe('Its mask public key'),
});

export const SecAggRosterSchema = z.object({
  type: z.literal('sa-roster'),
  ...secaggHead,
  roster: z.array(PublicKeysSchema).max(MAX_SECAGG_PARTIES).describe('Everyone who sent `sa-keys` in time (U1), sender included'),
});

export const SecAggPeersSchema = z.object({
  type: z.literal('sa-peers'),
  ...secaggHead,
  peers: z.array(str(128)).max(MAX_SECAGG_PARTIES).describe('Everyone who sent `sa-shares` in time (U2): mask against exactly these'),
  shares: z.array(z.object({ from: str(128), to: str(128), ciphertext: bytes() })).max(MAX_SECAGG_PARTIES).describe('The sealed shares addressed to this client'),
});

export const SecAggUnmaskSchema = z.object({
  type: z.literal('sa-unmask'),
  ...secaggHead,
  survivors: z.array(str(128)).max(MAX_SECAGG_PARTIES).describe('Clients whose masked input arrived (U3): reveal their self-mask seed shares'),
  dropped: z.array(str(128)).max(MAX_SECAGG_PARTIES).describe('Clients of U2 whose masked input did not: reveal their mask key shares'),
});

export const EndSchema = z.object({
  type: z.literal('end'),
  reason: z.enum(['completed', 'shutdown'], { error: 'must be completed or shutdown' }).describe('`completed`: all rounds done; `shutdown`: the server is stopping early'),
  round: int(0).describe('Last completed round (online: last published student version)'),
  model: opt(WireModelSchema).describe('The final student, fp32'),
  studentAccuracy: opt(finite()).describe('Final student accuracy on the server\'s validation set, in [0, 1]'),
  studentPath: opt(str(1024)).describe('HTTP path of the student as a TensorFlow.js LayersModel (e.g. /student/model.json)'),
});

/**
 * The most structure a client frame of each event can need, checked before it is decoded (frame-scan.ts): derived
 * from the schemas' own maxima, with room for a few unknown optional fields (ignored, see "Versioning").
 *  - hello: its map (≤ 11 fields) holding `classCounts` (≤ 10000 counts) and two short lists: depth 2, ~10,040 values.
 *  - logits: its map holding `logits` and `stats` (maps of ≤ 8 fields, binary payloads): depth 2, ~40 values.
 *  - weights: its map holding `weights` (≤ 1000 tensors), each a map of 3 fields holding `shape` (≤ 8 dims): depth 4,
 *    1000 × (1 map + 6 keys/values + 8 dims) + ~20 = ~15,020 values.
 * Depth gets 2 levels of slack, maps 64 entries; totals about twice the need.
 */
export const CLIENT_FRAME_SHAPES: Record<keyof typeof CLIENT_SCHEMAS, FrameShape> = {
  hello: { maxDepth: 4, maxMapEntries: 64, maxArrayLength: 10_000, maxItems: 20_000 },
  decline: { maxDepth: 3, maxMapEntries: 64, maxArrayLength: 64, maxItems: 200 },
  // Share lists: ≤ MAX_SECAGG_PARTIES maps of 2–3 fields each, depth 3.
  'sa-keys': { maxDepth: 3, maxMapEntries: 64, maxArrayLength: 64, maxItems: 200 },
  'sa-shares': { maxDepth: 4, maxMapEntries: 64, maxArrayLength: MAX_SECAGG_PARTIES, maxItems: 8 * MAX_SECAGG_PARTIES + 200 },
  'sa-masked': { maxDepth: 4, maxMapEntries: 64, maxArrayLength: 64, maxItems: 1_000 },
  'sa-reveal': { maxDepth: 4, maxMapEntries: 64, maxArrayLength: MAX_SECAGG_PARTIES, maxItems: 8 * MAX_SECAGG_PARTIES + 200 },
  logits: { maxDepth: 4, maxMapEntries: 64, maxArrayLength: 64, maxItems: 1_000 },
  weights: { maxDepth: 6, maxMapEntries: 64, maxArrayLength: 1_000, maxItems: 32_000 },
};

/** Every message schema by event name (the frame's `type` equals its event). */
export const CLIENT_SCHEMAS = {
  hello: HelloSchema,
  logits: LogitsSchema,
  weights: WeightsSchema,
  decline: DeclineSchema,
  'sa-keys': SecAggKeysSchema,
  'sa-shares': SecAggSharesSchema,
  'sa-masked': SecAggMaskedSchema,
  'sa-reveal': SecAggRevealSchema,
} as const;
export const SERVER_SCHEMAS = {
  welcome: WelcomeSchema,
  round: RoundSchema,
  ack: AckSchema,
  error: ErrorSchema,
  'round-result': RoundResultSchema,
  end: EndSchema,
  'sa-roster': SecAggRosterSchema,
  'sa-peers': SecAggPeersSchema,
  'sa-unmask': SecAggUnmaskSchema,
} as const;
