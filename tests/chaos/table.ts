// The chaos table, as text: one row per fault (and the baseline before the first), then the total.
import type { ChaosResult, PhaseRow } from "./chaos.js";

const secs = (ms: number | undefined) => (ms === undefined ? "never" : `${(ms / 1000).toFixed(2)} s`);

function failedCell(r: Pick<PhaseRow, "failed" | "codes">): string {
  const codes = Object.entries(r.codes)
    .sort((a, b) => b[1] - a[1])
    .map(([c, n]) => `${c} ${n}`)
    .join(", ");
  return codes ? `${r.failed} (${codes})` : String(r.failed);
}

function recoveryCell(r: PhaseRow): string {
  if (r.fault === "none") return "-";
  return `${secs(r.recoveryMs)} (${r.recoveredBy ?? "?"})`;
}

/** The table and a few lines under it (ambiguous creates, findings, unexpected exits). */
export function formatChaosTable(result: ChaosResult): string {
  const header = ["fault", "calls", "failed client calls", "degraded", "SERVING after", "recovery", "lost", "doubled"];
  const rows = result.rows.map((r) => [
    r.fault === "none" ? "(none: baseline)" : result.rows.some((x) => x.round > 1) ? `${r.fault} #${r.round}` : r.fault,
    String(r.calls),
    failedCell(r),
    String(r.degraded),
    r.fault === "none" ? "-" : secs(r.servingMs),
    recoveryCell(r),
    String(r.lost),
    String(r.doubled),
  ]);
  const codes: Record<string, number> = {};
  for (const r of result.rows) for (const [c, n] of Object.entries(r.codes)) codes[c] = (codes[c] ?? 0) + n;
  rows.push([
    "total",
    String(result.calls),
    failedCell({ failed: result.failed, codes }),
    String(result.rows.reduce((s, r) => s + r.degraded, 0)),
    "",
    "",
    String(result.lost),
    String(result.doubled),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 || i === 2 || i === 5 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(" | ")} |`;
  const out = [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)];

  out.push(
    "",
    `recovery: kill → first successful call through the gateway needing the process (call), its health SERVING (health), or everything tasks queued in its outbox meanwhile in JetStream (outbox)`,
    `checked ${result.tasksChecked} tasks; ambiguous creates (failed, yet the task exists; not a defect): ${result.ambiguous.length}` +
      (result.ambiguous.length > 0
        ? ` (${result.ambiguous.filter((a) => !a.keyed).length} without key, ${result.ambiguous.filter((a) => a.keyed).length} with key)`
        : ""),
  );
  const byOp = result.rows
    .filter((r) => r.failed > 0)
    .map(
      (r) =>
        `${r.fault}${r.round > 1 ? ` #${r.round}` : ""}: ${Object.entries(r.failedOps)
          .map(([op, n]) => `${op} ${n}`)
          .join(", ")}`,
    );
  if (byOp.length > 0) out.push(`failed calls by operation: ${byOp.join("; ")}`);
  if (result.unattributed.lost + result.unattributed.doubled > 0)
    out.push(
      `per-user findings in no fault's row: ${result.unattributed.lost} lost, ${result.unattributed.doubled} doubled`,
    );
  if (result.deliveryError) out.push(`delivery check: ${result.deliveryError}`);
  if (result.unexpectedExits.length > 0) out.push(`unexpected exits: ${result.unexpectedExits.join("; ")}`);
  if (result.findings.length > 0) out.push("findings:", ...result.findings.slice(0, 50).map((f) => `  ${f}`));
  if (result.findings.length > 50) out.push(`  … ${result.findings.length - 50} more`);
  return out.join("\n");
}
