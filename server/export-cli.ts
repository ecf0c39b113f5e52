import { parseArgs } from 'node:util';
import { buildModel } from '../shared/models/builders.ts';
import { applyWireWeights } from '../shared/models/wire.ts';
import type { WireModel } from '../shared/protocol/messages.ts';
import type { CoordinatorState } from './coordinator.ts';
import { FileCheckpointStore } from './state/checkpoint-store.ts';
import { exportRelease, releaseStudent, type StudentRelease } from './state/student-release.ts';

const HELP = `fedistill export — write the student of a server's state dir as a TensorFlow.js LayersModel

  --state-dir DIR   the server's --state-dir (its checkpoints)
  --out DIR         where model.json, weights.bin and model-card.json go (created; other files there are left alone)
  --version N       the student version to export (one of the kept checkpoints)          [the newest]

Load the result with tf.loadLayersModel (a file:// or http:// URL, or tf.io.fromMemory on the parsed files);
model-card.json says how inputs are normalised and that outputs are logits.
`;

/** What a checkpoint's strategy state holds of the student, whatever the strategy (all keep `model`). */
interface WithModel {
  model: WireModel;
}

/** The student of the newest checkpoint in `stateDir` (or of the one whose student is `version`), as a release. */
export async function releaseFromStateDir(stateDir: string, version?: number): Promise<StudentRelease> {
  const store = new FileCheckpointStore(stateDir);
  const seen: number[] = [];
  for await (const ck of store.newestFirst()) {
    const s = ck.state as CoordinatorState;
    const model = (s.strategy as WithModel | undefined)?.model;
    if (!model) throw new Error(`${ck.file} holds no student model`);
    seen.push(model.version);
    if (version !== undefined && model.version !== version) continue;
    if (!s.student) throw new Error(`${ck.file} was written by an older fedistill without the student's input shape and classes; run one more round with this version, then export`);
    const m = buildModel({ kind: model.kind, inputShape: s.student.inputShape as [number, number, number], numClasses: s.student.classNames.length });
    applyWireWeights(m, model.weights);
    // The summary of the round that made this version: its accuracy, and when it ended (the card's date).
    const made = [...s.history].reverse().find((h) => h.studentVersion === model.version && h.status === 'completed');
    try {
      return await releaseStudent(m, {
        ...s.student,
        kind: model.kind,
        version: model.version,
        round: s.round,
        studentAccuracy: made?.studentAccuracy,
        createdAt: made ? new Date(made.startedAt + made.seconds * 1000) : undefined,
      });
    } finally {
      m.dispose();
    }
  }
  if (seen.length === 0) throw new Error(`no readable checkpoint in ${stateDir} (is it the server's --state-dir?)`);
  throw new Error(`student v${version} is not in the kept checkpoints of ${stateDir} (they hold v${[...new Set(seen)].join(', v')})`);
}

export async function main(argv: string[]): Promise<void> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      'state-dir': { type: 'string' },
      out: { type: 'string' },
      version: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) return void console.log(HELP);
  if (!v['state-dir'] || !v.out) throw new Error('give --state-dir DIR and --out DIR (see --help)');
  const version = v.version === undefined ? undefined : Number(v.version);
  if (version !== undefined && !(Number.isInteger(version) && version >= 0)) throw new Error(`--version must be a student version number, got '${v.version}'`);
  const release = await releaseFromStateDir(v['state-dir'], version);
  const files = await exportRelease(v.out, release);
  const acc = release.card.evaluation.studentAccuracy;
  console.log(
    `student v${release.version} (${release.card.strategy}, ${release.card.architecture.kind}, round ${release.card.round}` +
      `${acc !== null ? `, validation accuracy ${(acc * 100).toFixed(2)}% on ${release.card.evaluation.validationSize} rows` : ''}) → ${files.join(', ')}`,
  );
}
