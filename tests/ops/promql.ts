// What the live-Prometheus test needs from PromQL text: the metric names an expression reads
// (Prometheus 2.42 has no parse API to ask), and Grafana's variables replaced by what "All" means.

const KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "offset",
  "inf",
  "nan",
]);

/**
 * Metric names an expression selects: identifiers that are not a function or aggregation (followed
 * by `(`), a keyword, a label name in a grouping clause, or inside a label matcher `{...}`, a range
 * `[...]` or a string. Sorted, each once.
 */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  // Not preceded by a digit or a dot: `15m` in `offset 15m`, `1e3`.
  for (const m of stripped.matchAll(/(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const id = m[0];
    const after = stripped.slice((m.index ?? 0) + id.length);
    if (/^\s*\(/.test(after) || KEYWORDS.has(id.toLowerCase())) continue;
    names.add(id);
  }
  return [...names].sort();
}

/** A Grafana target's expr as Prometheus would get it with every variable at "All". */
export function grafanaToPromql(expr: string, rateInterval = "1m"): string {
  return expr
    .replaceAll("$__rate_interval", rateInterval)
    .replaceAll("$__interval", rateInterval)
    .replace(/=~"\$service"/g, '=~".*"');
}
