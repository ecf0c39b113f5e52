import type { RoundSummary } from '../../shared/dashboard-feed.ts';
import type { Logger } from '../logger.ts';
import type { CheckpointStore } from '../state/checkpoint-store.ts';
import type { JournalRecord, UploadJournal } from '../state/upload-journal.ts';
import type { AnyStrategy } from '../strategies/strategy.ts';
import type { ClientRegistry, LegacyStoredClient, StoredClient } from './client-registry.ts';

/** What an exported student's model card needs that the student's weights don't say. */
export interface StudentMeta {
  strategy: string;
  inputShape: number[];
  classNames: string[];
  validationSize: number;
  serverVersion: string;
}

/** A checkpoint's body (the format both coordinators write; older checkpoints load too). */
export interface CoordinatorState {
  round: number;
  /** Checkpoints before resume tokens were hashed hold `resumeToken` instead; it is hashed on restore. */
  clients: (StoredClient | LegacyStoredClient)[];
  history: RoundSummary[];
  strategy: unknown;
  /** The last journal record this checkpoint covers: replay starts after it. */
  journalSeq?: number;
  /** What the coordinator's scheduling keeps besides (the online task loop's counters). */
  extra?: unknown;
  /** For `fedistill export`: what the model card says besides the weights. */
  student?: StudentMeta;
}

/** What a coordinator contributes to a checkpoint besides the strategy's state and the registry. */
export type CoordinatorSnapshot = Pick<CoordinatorState, 'round' | 'history' | 'extra' | 'student'>;

export interface RecoveryOptions {
  store: CheckpointStore;
  journal: UploadJournal;
  strategy: AnyStrategy;
  registry: ClientRegistry;
  log: Logger;
}

export interface RecoveryHooks {
  /** The checkpoint's own fields (round, history, extra), after the strategy's state and before any replay. */
  adopt(state: CoordinatorState): void;
  /** A journal record past the checkpoint that is not a registration (those go to the registry). */
  replay(record: JournalRecord): void;
}

/**
 * Checkpoints plus the write-ahead journal, for both coordinators: restore the newest checkpoint that verifies, then
 * replay the journal past the sequence it covers; and write a checkpoint (with that sequence) and compact the journal.
 */
export class Recovery {
  constructor(private readonly o: RecoveryOptions) {}

  /** True when there was anything to restore (a checkpoint or journal records). */
  async restore(hooks: RecoveryHooks): Promise<boolean> {
    const { store, journal, strategy, registry, log } = this.o;
    const ck = await store.loadLatest();
    let after = 0;
    if (ck) {
      const s = ck.state as CoordinatorState;
      await strategy.importState(s.strategy);
      hooks.adopt(s);
      for (const c of s.clients) registry.restore(c);
      after = s.journalSeq ?? 0;
      journal.advanceTo(after);
      log.info({ file: ck.file, round: s.round, studentVersion: strategy.version, clients: s.clients.length }, `restored from ${ck.file}: round ${s.round} done, student v${strategy.version}, ${s.clients.length} known clients`);
    }
    // Anything about rounds at or below the checkpoint's is already in it: the hooks skip it, never counting it twice.
    const records = journal.replay(after);
    for (const r of records) if (!registry.replay(r)) hooks.replay(r);
    return ck !== null || records.length > 0;
  }

  /** Write a checkpoint of what `snapshot` reads (after the strategy's state); throws if the store fails, journal kept. */
  async save(snapshot: () => CoordinatorSnapshot): Promise<void> {
    const { store, journal, strategy, registry } = this.o;
    const strategyState = await strategy.exportState();
    // Everything else is read in one synchronous step with the journal position it corresponds to.
    const { round, history, extra, student } = snapshot();
    const state: CoordinatorState = { round, clients: registry.stored(), history, strategy: strategyState, journalSeq: journal.seq, extra, student };
    await store.save(round, state);
    // What the checkpoint covers leaves the journal (a crash before this is harmless: replay skips it); records
    // appended while it was being written stay.
    journal.compact(state.journalSeq!);
  }
}
