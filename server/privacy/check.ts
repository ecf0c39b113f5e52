import type { ServerConfig } from '../config.ts';

/** Aggregators that can be computed from a sum (secure aggregation without DP; with DP the teacher is the mean). */
export const SECURE_AGGREGATORS = ['mean-probs', 'confidence'] as const;

/**
 * The privacy settings' rules that need more than one flag (RangeError naming the flags, as the settings table's):
 * what secure aggregation and DP can run with.
 */
export function checkPrivacyConfig(cfg: ServerConfig): void {
  const dp = cfg.privacy.epsilon > 0 || cfg.privacy.noiseMultiplier > 0;
  const sa = cfg.secureAggregation.enabled;
  if (cfg.strategy === 'online' && (dp || sa)) {
    throw new RangeError(`--strategy online: ${sa ? '--secure-aggregation' : '--dp-epsilon/--dp-noise-multiplier'} needs rounds (ensemble, mutual${sa ? '' : ' or fedavg'}); the online strategy takes uploads one at a time`);
  }
  if (!sa) return;
  if (cfg.strategy === 'fedavg') {
    throw new RangeError("--secure-aggregation sums teachers' probabilities (ensemble, mutual); fedavg's weights are not summed securely. DP-FedAvg with local noise is --dp-epsilon without it");
  }
  if (!dp && !(SECURE_AGGREGATORS as readonly string[]).includes(cfg.aggregator)) {
    throw new RangeError(
      `--secure-aggregation: the server sees only a sum, so --aggregator must be one a sum gives: ${SECURE_AGGREGATORS.join(' or ')} (got ${cfg.aggregator}; ` +
        'median, trimmed-mean, weighted, era and mean-logits need each client\'s upload, and reputation and share caps are off under it)',
    );
  }
  if (cfg.minClients < 2) throw new RangeError('--secure-aggregation needs --min-clients ≥ 2: a sum of one client is that client\'s upload');
}
