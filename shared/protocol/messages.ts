/**
 * The protocol's message types, inferred from the zod schemas in schemas.ts (the single source of truth):
 * change a message there, and its type, its validator and docs/protocol.md's tables follow.
 */
import type { z } from 'zod';
import type * as S from './schemas.ts';
export type { ModelKind } from './model-kinds.ts';

/** Bumped on any incompatible change to a message; the server refuses other versions at `hello` (see docs/protocol.md). */
export const PROTOCOL_VERSION = 1;

/** An fp32 tensor: name, shape and row-major float32 values (uploads, checkpoints, decoded weights). */
export type WireTensor = z.output<typeof S.WireTensorSchema>;
/** A tensor of a model sent to clients: fp32, or fp16 / int8 bytes (decode with shared/models/weight-codec.ts). */
export type EncodedTensor = z.output<typeof S.EncodedTensorSchema>;
/** Student (or FedAvg global) weights as they travel downlink and are checkpointed. */
export type WireModel = z.output<typeof S.WireModelSchema>;
/** Metadata about a client's local step (scalars only). */
export type ClientRoundStats = z.output<typeof S.ClientRoundStatsSchema>;
export type ProxyInfo = z.output<typeof S.ProxyInfoSchema>;
export type ErrorCode = z.output<typeof S.ErrorCodeSchema>;

// ---- client → server ----
export type HelloMsg = z.output<typeof S.HelloSchema>;
export type LogitsMsg = z.output<typeof S.LogitsSchema>;
export type WeightsMsg = z.output<typeof S.WeightsSchema>;
export type DeclineMsg = z.output<typeof S.DeclineSchema>;
export type SecAggKeysMsg = z.output<typeof S.SecAggKeysSchema>;
export type SecAggSharesMsg = z.output<typeof S.SecAggSharesSchema>;
export type SecAggMaskedMsg = z.output<typeof S.SecAggMaskedSchema>;
export type SecAggRevealMsg = z.output<typeof S.SecAggRevealSchema>;
export type SecAggClientMsg = SecAggKeysMsg | SecAggSharesMsg | SecAggMaskedMsg | SecAggRevealMsg;

// ---- server → client ----
export type WelcomeMsg = z.output<typeof S.WelcomeSchema>;
/** What a selected client must do this round (Flower's "configure_fit"). */
export type RoundMsg = z.output<typeof S.RoundSchema>;
export type AckMsg = z.output<typeof S.AckSchema>;
export type ErrorMsg = z.output<typeof S.ErrorSchema>;
export type RoundResultMsg = z.output<typeof S.RoundResultSchema>;
/** The federation is over: sent once to every connected client; the server sends nothing more after it. */
export type EndMsg = z.output<typeof S.EndSchema>;
export type SecAggRosterMsg = z.output<typeof S.SecAggRosterSchema>;
export type SecAggPeersMsg = z.output<typeof S.SecAggPeersSchema>;
export type SecAggUnmaskMsg = z.output<typeof S.SecAggUnmaskSchema>;

export type ClientMsg = HelloMsg | LogitsMsg | WeightsMsg | DeclineMsg | SecAggClientMsg;
export type ServerMsg = WelcomeMsg | RoundMsg | AckMsg | ErrorMsg | RoundResultMsg | EndMsg | SecAggRosterMsg | SecAggPeersMsg | SecAggUnmaskMsg;
