/** The settings table of `fedistill server`, `client` and `simulate`, and what reads it. Browser-safe. */
export * from './types.ts';
export * from './values.ts';
export * from './table.ts';
export * from './read.ts';
export * from './help.ts';
export { STRATEGIES, parseTasks, type StrategyName } from './server.ts';
export { parseFashionMnistPart, type FashionMnistPart } from './client.ts';
export { BACKENDS, LOG_LEVELS, LOG_FORMATS, type LogLevel, type LogFormat } from './common.ts';
export { SCENARIO_NAMES, PARTITIONS } from './simulate.ts';
export * from './argv.ts';
