/** Counters and gauges for /metrics (Prometheus text format), kept tiny on purpose. */
export class Metrics {
  private readonly counters = new Map<string, number>();

  inc(name: string, labels: Record<string, string> = {}, by = 1): void {
    const key = name + labelText(labels);
    this.counters.set(key, (this.counters.get(key) ?? 0) + by);
  }

  render(gauges: Record<string, number | undefined>): string {
    const lines: string[] = [];
    for (const [k, v] of [...this.counters].sort()) lines.push(`${k} ${v}`);
    for (const [k, v] of Object.entries(gauges)) if (v !== undefined && Number.isFinite(v)) lines.push(`${k} ${v}`);
    return lines.join('\n') + '\n';
  }
}

function labelText(labels: Record<string, string>): string {
  const e = Object.entries(labels);
  return e.length ? `{${e.map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`).join(',')}}` : '';
}
