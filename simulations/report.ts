/** Plain-text tables for terminals: right-aligned numbers (the first `leftColumns` columns, names, left), a header rule. */
export function table(headers: string[], rows: (string | number)[][], leftColumns = 0): string {
  const cells = rows.map((r) => r.map(String));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

export function pct(x: number | undefined): string {
  return x === undefined || Number.isNaN(x) ? '-' : `${(x * 100).toFixed(2)}%`;
}

export function kb(bytes: number): string {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(2)} MB` : `${(bytes / 1e3).toFixed(1)} KB`;
}
