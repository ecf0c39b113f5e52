/** Differential privacy for uploads: the Rényi-DP accountant and the client-side mechanisms it accounts for. */
export {
  DEFAULT_ORDERS,
  RdpAccountant,
  calibrateNoiseMultiplier,
  deltaFromRdp,
  epsilonFromRdp,
  rdpSampledGaussian,
  type RdpAccountantJSON,
} from './rdp.ts';
export {
  gaussianNoise,
  privatizeProbabilities,
  privatizeUpdate,
  projectRowsToSimplex,
  uploadSensitivity,
} from './mechanisms.ts';
