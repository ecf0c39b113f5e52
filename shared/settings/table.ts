import { CLIENT_SETTINGS } from './client.ts';
import { COMMON_SETTINGS } from './common.ts';
import { SERVER_SETTINGS } from './server.ts';
import { SIMULATE_SETTINGS } from './simulate.ts';
import type { Command, Relation, Setting } from './types.ts';

/** Every setting of every command: the one place flags, env vars, defaults, ranges and help are defined. */
export const SETTINGS: readonly Setting[] = [...SERVER_SETTINGS, ...CLIENT_SETTINGS, ...SIMULATE_SETTINGS, ...COMMON_SETTINGS];

/** Checks across settings; each says which flags to change. */
export const RELATIONS: readonly Relation[] = [
  {
    commands: ['client', 'simulate'],
    flags: ['topk', 'codec'],
    help: '--topk only with --codec topk or topk8 (the other codecs send every logit)',
    check: (v, given) => (given.has('topK') && v.codec !== 'topk' && v.codec !== 'topk8' ? `--topk: applies to --codec topk or topk8, not ${v.codec}` : null),
  },
  {
    commands: ['server'],
    flags: ['proxy-subset', 'proxy'],
    help: '--proxy-subset ≤ the rows of --proxy (a default --proxy-subset is lowered to fit, and said so)',
    check: (v, given) => {
      const m = /^fashion-mnist:(\d+)$/.exec(String(v.proxy));
      // Other proxy sets are counted once loaded (server CLI), where a default proxySubset is also scaled down.
      if (!m || !given.has('proxySubset')) return null;
      return (v.proxySubset as number) > Number(m[1]) ? `--proxy-subset: ${v.proxySubset} is more than the ${m[1]} rows of --proxy ${v.proxy}` : null;
    },
  },
  {
    commands: ['server'],
    flags: ['token', 'credentials', 'insecure-no-auth'],
    help: 'exactly one of --token, --credentials and --insecure-no-auth: an empty token never means "no auth"',
    check: (v) => {
      const modes = [v.token ? '--token' : '', v.credentials ? '--credentials' : '', v.insecureNoAuth ? '--insecure-no-auth' : ''].filter(Boolean);
      if (modes.length === 1) return null;
      if (modes.length > 1) return `give one of ${modes.join(', ')}, not several (one way for clients to authenticate)`;
      return (
        'no client authentication: give --token T (one shared secret), --credentials (per-client credentials from ' +
        "'fedistill credential issue', with --state-dir) or, for a trusted loopback experiment, --insecure-no-auth " +
        '(config: token, credentials, insecureNoAuth)'
      );
    },
  },
  {
    commands: ['server'],
    flags: ['credentials', 'state-dir'],
    help: '--credentials needs --state-dir (the signing secret and the revocation list live there)',
    check: (v) => (v.credentials && !v.stateDir ? '--credentials needs --state-dir DIR: the signing secret and the revocation list live in DIR/credentials/' : null),
  },
  {
    commands: ['server'],
    flags: ['tls-cert', 'tls-key'],
    help: '--tls-cert and --tls-key together',
    check: (v) => ((v['tls.cert'] === undefined) !== (v['tls.key'] === undefined) ? 'give --tls-cert FILE and --tls-key FILE together (https needs both)' : null),
  },
  {
    commands: ['server', 'simulate'],
    flags: ['dp-epsilon', 'dp-noise-multiplier'],
    help: 'one of --dp-epsilon and --dp-noise-multiplier',
    check: (v) => ((v['privacy.epsilon'] as number) > 0 && (v['privacy.noiseMultiplier'] as number) > 0 ? 'give --dp-epsilon E (the noise is calibrated to it) or --dp-noise-multiplier Z, not both' : null),
  },
  {
    commands: ['server', 'simulate'],
    flags: ['dp-epsilon', 'dp-rounds', 'rounds'],
    help: '--dp-epsilon plans for a number of uploads: --dp-rounds, or --rounds when it is not 0',
    check: (v) =>
      (v['privacy.epsilon'] as number) > 0 && !(v['privacy.rounds'] as number) && !(v.rounds as number)
        ? '--dp-epsilon calibrates the noise for a number of uploads per client: give --dp-rounds N (the federation has no --rounds limit)'
        : null,
  },
  {
    commands: ['simulate'],
    flags: ['proxy-subset', 'proxy-size'],
    help: '--proxy-subset ≤ --proxy-size',
    check: (v, given) =>
      given.has('proxySubset') && (v.proxySubset as number) > (v.proxySize as number)
        ? `--proxy-subset: ${v.proxySubset} is more than --proxy-size ${v.proxySize}`
        : null,
  },
  {
    commands: ['simulate'],
    flags: ['strategy', 'scenario'],
    help: '--scenario other than none needs rounds: not with --strategy online',
    check: (v) =>
      v.scenario !== 'none' && (v.strategies as string[]).includes('online')
        ? `--scenario ${v.scenario} counts its tasks in rounds; --strategy online has none (use ensemble, mutual or fedavg)`
        : null,
  },
  {
    commands: ['client'],
    flags: ['data-dir', 'fashion-mnist-part'],
    help: 'exactly one of --data-dir and --fashion-mnist-part',
    check: (v) => {
      if (v.dataDir !== undefined && v.fashionMnistPart !== undefined) return 'give --data-dir or --fashion-mnist-part, not both';
      if (v.dataDir === undefined && v.fashionMnistPart === undefined) return 'give --data-dir DIR (your private data) or --fashion-mnist-part I/N';
      return null;
    },
  },
];

export function settingsFor(command: Command): Setting[] {
  return SETTINGS.filter((s) => s.commands.includes(command));
}

export function settingByKey(key: string): Setting {
  const s = SETTINGS.find((x) => x.key === key);
  if (!s) throw new Error(`no setting '${key}' in the settings table`);
  return s;
}
