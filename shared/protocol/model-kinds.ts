/**
 * Architectures a client or the student may use (clients may differ from each other and from the student).
 * The list is part of the wire protocol (`hello.model`, `WireModel.kind`), so it lives here and model code imports it:
 * the protocol must not depend on TensorFlow.js.
 */
export const MODEL_KINDS = ['mlp', 'cnn'] as const;
export type ModelKind = (typeof MODEL_KINDS)[number];
