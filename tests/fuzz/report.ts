// The fuzz summary as text: requests sent, codes per method (and per protocol), then every
// finding with what is needed to reproduce it.
import type { Finding, FuzzReport } from "./driver.js";

export function formatReport(r: FuzzReport): string {
  const out: string[] = [];
  out.push(
    `fuzz: seed ${r.seed}, ${r.sent} requests in ${(r.durationMs / 1000).toFixed(1)} s through the gateway`,
    `public services (from reflection): ${r.services.join(", ")}`,
  );
  if (r.unknownServices.length > 0)
    out.push(`listed but not in @taskmesh/gen (not fuzzed): ${r.unknownServices.join(", ")}`);
  out.push("", table("method", r.codes), "", table("protocol", r.byProtocol), "");
  out.push(
    `health afterwards: ${Object.entries(r.health)
      .map(([n, s]) => `${n} ${s}`)
      .join(", ")}`,
    `storage: fuzz user's tasks ${r.storage.before} before, ${r.storage.after} after; OK CreateTask answers ${r.storage.okCreates}; ` +
      `unexplained ${r.storage.unexplained.length}; baseline tasks lost or changed ${r.storage.lost.length}`,
    `slowest: ${r.slowest.map((x) => `${x.ms} ms ${x.method} ${x.protocol} ${x.code} [${x.labels.join("; ")}]`).join(" | ")}`,
    `offenders (INTERNAL/UNKNOWN/HTTP 500): ${r.offenders.length}; leaks: ${r.leaks.length}; no answer: ${r.noAnswer.length}`,
  );
  if (r.storage.unexplained.length > 0)
    out.push("", "tasks no OK CreateTask returned:", ...r.storage.unexplained.map((t) => `- ${t}`));
  for (const [title, list] of [
    ["OK CreateTask answers without a readable task id", r.storage.okWithoutId],
    ["offenders", r.offenders],
    ["leaks", r.leaks],
    ["no answer", r.noAnswer],
  ] as const) {
    if (list.length === 0) continue;
    out.push("", `${title}:`);
    if (list.length > 5) {
      const kinds = new Map<string, number>();
      for (const f of list) {
        const k = `${f.code}: ${f.message.replace(/field no \d+ wire type \d+/, "field no N wire type W").slice(0, 120)}`;
        kinds.set(k, (kinds.get(k) ?? 0) + 1);
      }
      for (const [k, n] of [...kinds].sort((a, b) => b[1] - a[1])) out.push(`  ${String(n).padStart(5)} × ${k}`);
    }
    for (const f of dedupe(list)) out.push(formatFinding(f));
  }
  return out.join("\n");
}

/** One line per distinct (method, code, message), with how many cases share it and the first. */
function dedupe(list: readonly Finding[]): Array<Finding & { count: number }> {
  const byKey = new Map<string, Finding & { count: number }>();
  for (const f of list) {
    const key = `${f.method}|${f.code}|${f.why}|${f.message.replace(/[0-9a-f-]{36}|\d+/g, "#")}`;
    const seen = byKey.get(key);
    if (seen) seen.count++;
    else byKey.set(key, { ...f, count: 1 });
  }
  return [...byKey.values()];
}

export function formatFinding(f: Finding & { count?: number }): string {
  const q = f.request;
  return [
    `- ${f.why}: ${f.method} over ${f.protocol} → ${f.code}${f.httpStatus ? ` (HTTP ${f.httpStatus})` : ""} ${JSON.stringify(f.message)}` +
      (f.count && f.count > 1 ? ` [${f.count} cases like it]` : ""),
    `    case: seed ${f.seed} index ${f.index}; replay: ${f.replay}`,
    `    input: ${f.labels.join("; ") || "(well-formed values)"}`,
    `    request: ${q.transport} ${q.httpMethod} ${q.path} ${JSON.stringify(q.headers)}`,
    `    body (${q.bodyLength} bytes${q.bodyTruncated ? ", first 512 shown" : ""}, base64): ${q.bodyBase64.length > 600 ? `${q.bodyBase64.slice(0, 600)}…` : q.bodyBase64}`,
  ].join("\n");
}

function table(first: string, rows: Record<string, Record<string, number>>): string {
  const totals: Record<string, number> = {};
  for (const r of Object.values(rows)) for (const [c, n] of Object.entries(r)) totals[c] = (totals[c] ?? 0) + n;
  const cols = Object.keys(totals).sort((a, b) => (totals[b] as number) - (totals[a] as number));
  const names = Object.keys(rows).sort();
  const header = [first, "sent", ...cols];
  const body = names.map((n) => {
    const r = rows[n] as Record<string, number>;
    const sent = Object.values(r).reduce((s, x) => s + x, 0);
    return [n, String(sent), ...cols.map((c) => (r[c] ? String(r[c]) : "."))];
  });
  const all = Object.values(totals).reduce((s, x) => s + x, 0);
  body.push(["total", String(all), ...cols.map((c) => String(totals[c]))]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] as string).length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join("  ");
  return [line(header), ...body.map(line)].join("\n");
}
