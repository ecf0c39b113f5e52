import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import parsePrometheusTextFormat, { type PromFamily, type PromSample } from 'parse-prometheus-text-format';
import { PROTOCOL_VERSION } from '../shared/protocol/messages.ts';
import type { Bench } from './helpers.ts';
import { makeClient, RawPeer, roundsDone, startBench, viewerAuth } from './helpers.ts';

interface Scrape {
  contentType: string;
  families: Map<string, PromFamily>;
  text: string;
}

async function scrape(b: Bench): Promise<Scrape> {
  const res = await fetch(`${b.url}/metrics`, { headers: viewerAuth() });
  assert.equal(res.status, 200);
  const text = await res.text();
  return { contentType: res.headers.get('content-type') ?? '', families: new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f])), text };
}

function family(s: Scrape, name: string): PromFamily {
  const f = s.families.get(name);
  assert.ok(f, `no metric family ${name} in:\n${[...s.families.keys()].join('\n')}`);
  return f;
}

function sample(s: Scrape, name: string, labels: Record<string, string> = {}): PromSample | undefined {
  return family(s, name).metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
}

function value(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  const m = sample(s, name, labels);
  assert.ok(m, `${name}${JSON.stringify(labels)} has no sample`);
  return Number(m.value);
}

/** Every family a proper one: HELP and TYPE in the text, a known type, a help line that says something. */
function assertWellFormed(s: Scrape): void {
  assert.ok(s.contentType.startsWith('text/plain') && s.contentType.includes('version=0.0.4'), s.contentType);
  // The process's families and the aggregator's are two texts joined: no family may appear twice.
  const typed = [...s.text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]);
  assert.deepEqual(typed.filter((n, i) => typed.indexOf(n) !== i), [], 'families declared twice');
  assert.equal(typed.length, s.families.size);
  for (const f of s.families.values()) {
    assert.ok(f.help.length > 5, `${f.name} has no HELP`);
    assert.notEqual(f.type, 'UNTYPED', `${f.name} has no TYPE`);
    assert.ok(s.text.includes(`# HELP ${f.name} `) && s.text.includes(`# TYPE ${f.name} `), f.name);
    if (f.name.startsWith('fedistill_')) {
      if (f.type === 'COUNTER') assert.ok(f.name.endsWith('_total'), `counter ${f.name} should end in _total`);
      for (const m of f.metrics) if (m.value !== undefined && m.value.toLowerCase() !== 'nan') assert.ok(Number(m.value) >= 0, `${f.name} = ${m.value}`);
    }
  }
}

test('/metrics through prom-client: every family typed and described, counts equal what the round did', async () => {
  const b = await startBench(2, { rounds: 1 });
  after(() => b.agg.close());
  // A second aggregator in the same process: its registry is its own (nothing of the first one's round shows there).
  const idle = await startBench(1, { rounds: 1 });
  after(() => idle.agg.close());

  // Before any round: counters at zero, the student not scored yet (NaN, not a false 0).
  const before = await scrape(b);
  assertWellFormed(before);
  assert.equal(value(before, 'fedistill_uploads_accepted_total'), 0);
  assert.ok(Number.isNaN(value(before, 'fedistill_student_accuracy')));

  // One refusal: an upload from a connection that never said hello.
  const peer = new RawPeer(b.url);
  after(() => peer.close());
  await peer.connected();
  peer.send('logits', { type: 'logits', protocol: PROTOCOL_VERSION, round: 1 });
  assert.equal((await peer.error()).code, 'not-registered');

  const clients = [0, 1].map((i) => makeClient(b, i));
  after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  await roundsDone(b, 1);
  const s = await scrape(b);
  assertWellFormed(s);

  const round = b.agg.coordinator.history[0];
  assert.equal(round.status, 'completed');
  assert.equal(value(s, 'fedistill_rounds_total', { status: 'completed' }), 1);
  assert.equal(value(s, 'fedistill_uploads_accepted_total'), round.participants);
  assert.equal(round.participants, 2);
  assert.equal(value(s, 'fedistill_uplink_bytes_total'), round.uplinkBytes);
  // Downlink counts every frame: the round's tasks plus welcomes, acks, the refusal and the end of the federation.
  assert.ok(value(s, 'fedistill_downlink_bytes_total') > round.downlinkBytes, 'downlink covers more than the round tasks');
  assert.equal(value(s, 'fedistill_refused_frames_total', { event: 'logits', code: 'not-registered' }), 1);

  const duration = sample(s, 'fedistill_round_duration_seconds')!;
  assert.equal(family(s, 'fedistill_round_duration_seconds').type, 'HISTOGRAM');
  assert.equal(Number(duration.count), 1);
  assert.ok(Math.abs(Number(duration.sum) - round.seconds) < 1e-6, `${duration.sum} vs ${round.seconds}`);
  assert.equal(Number(duration.buckets!['+Inf']), 1);
  const aggregation = sample(s, 'fedistill_aggregation_duration_seconds')!;
  assert.equal(Number(aggregation.count), 1);
  assert.ok(Math.abs(Number(aggregation.sum) - round.aggregateSeconds) < 1e-6);
  assert.equal(Number(sample(s, 'fedistill_evaluation_duration_seconds')!.count), 1);
  const participants = sample(s, 'fedistill_round_participants')!;
  assert.deepEqual([Number(participants.count), Number(participants.sum)], [1, 2]);

  assert.equal(value(s, 'fedistill_round'), 1);
  assert.equal(value(s, 'fedistill_student_version'), b.agg.coordinator.strategy.version);
  assert.ok(Math.abs(value(s, 'fedistill_student_accuracy') - round.studentAccuracy!) < 1e-9);
  assert.equal(value(s, 'fedistill_known_clients'), 2);
  assert.equal(value(s, 'fedistill_open_round_selected'), 0);
  // The process's default metrics, on this aggregator's registry.
  assert.equal(family(s, 'process_cpu_user_seconds_total').type, 'COUNTER');
  assert.ok(value(s, 'nodejs_heap_size_used_bytes') > 0);
  assert.equal(s.families.has('fedistill_online_open_tasks'), false, 'no online series on a round-based server');

  const other = await scrape(idle);
  assertWellFormed(other);
  // The process's default metrics are registered once per process, yet every aggregator's /metrics has them.
  assert.equal(family(other, 'process_cpu_user_seconds_total').type, 'COUNTER');
  assert.ok(value(other, 'nodejs_heap_size_used_bytes') > 0);
  assert.ok(family(other, 'nodejs_gc_duration_seconds').type === 'HISTOGRAM');
  assert.equal(value(other, 'fedistill_uploads_accepted_total'), 0);
  assert.equal(sample(other, 'fedistill_rounds_total', { status: 'completed' }), undefined);
  assert.equal(Number(sample(other, 'fedistill_round_duration_seconds')!.count), 0);
});

test('/metrics online: uploads, their staleness histogram and the training steps match the coordinator', async () => {
  const b = await startBench(2, { strategy: 'online', rounds: 2, publishEverySteps: 6, publishEverySeconds: 60, stepsPerUpload: 6, maxStaleness: 1000 });
  after(() => b.agg.close());
  const clients = [0, 1].map((i) => makeClient(b, i));
  after(() => clients.forEach((c) => c.stop()));
  await Promise.all(clients.map((c) => c.start()));
  await roundsDone(b, 2);
  clients.forEach((c) => c.stop());
  // Every upload in flight has been taken in or refused once nobody is connected.
  for (let i = 0; i < 100 && b.agg.coordinator.status().clients.some((c) => c.connected); i++) await new Promise((r) => setTimeout(r, 50));

  const s = await scrape(b);
  assertWellFormed(s);
  const stats = (b.agg.coordinator as unknown as { onlineStats(): { accepted: number; openTickets: number } }).onlineStats();
  assert.ok(stats.accepted >= 2, `accepted ${stats.accepted}`);
  assert.equal(value(s, 'fedistill_uploads_accepted_total'), stats.accepted);
  assert.equal(value(s, 'fedistill_online_uploads_accepted'), stats.accepted);
  const staleness = sample(s, 'fedistill_online_upload_staleness_versions')!;
  assert.equal(Number(staleness.count), stats.accepted);
  assert.equal(value(s, 'fedistill_online_open_tasks'), stats.openTickets);
  const steps = b.agg.coordinator.history.reduce((n, r) => n + (r.trainSteps ?? 0), 0);
  assert.equal(value(s, 'fedistill_online_train_steps_total'), steps);
  assert.equal(value(s, 'fedistill_rounds_total', { status: 'completed' }), b.agg.coordinator.history.length);
});
