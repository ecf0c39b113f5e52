/**
 * Secure aggregation (Bonawitz et al., CCS 2017, semi-honest variant), transport-agnostic: the server learns
 * Σ_{u∈U3} x_u in fixed point and never a single client's input, as long as fewer than t clients collude with it and it
 * follows the protocol (an actively malicious server could send different survivor lists to different clients).
 */
export { SecAggClient } from './client.ts';
export { SecAggServer } from './server.ts';
export {
  decodeFixedPoint,
  encodeFixedPoint,
  fixedPointScale,
  KEY_BYTES,
  MAX_PARTICIPANTS,
  MIN_SCALE,
  validateParams,
  type SecAggParams,
} from './params.ts';
export { SEAL_OVERHEAD } from './crypto.ts';
export { SHARE_BYTES } from './validate.ts';
export type { PublicKeys, Reveal, SealedShare, UnmaskRequest } from './types.ts';
