/**
 * The READMEs name only what the code has: every metric name (`taskmesh_*`, `rpc_server_*`) is an
 * instrument the code creates, every environment variable in backticks is read somewhere in the
 * code, scripts or manifests, and every repository path in backticks exists.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../mesh/gen/paths.js";

const SKIP_DIRS = new Set(["node_modules", "dist", ".git", ".data", ".buf-deps", "coverage"]);
function walk(dir: string, keep: (file: string) => boolean): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (SKIP_DIRS.has(e.name)) return [];
    const path = join(dir, e.name);
    if (e.isDirectory()) return walk(path, keep);
    return keep(path) ? [path] : [];
  });
}

const readmes = walk(REPO_ROOT, (f) => f.endsWith("README.md"));
/** Code, scripts and manifests: where a variable is read or set and an instrument created. */
const code = walk(REPO_ROOT, (f) => /\.(ts|mjs|js|go|ya?ml|json|sh)$|\/(Tiltfile|Dockerfile|run)$/.test(f))
  .filter((f) => !f.endsWith("package-lock.json") && !f.endsWith(".md"))
  .map((f) => readFileSync(f, "utf8"))
  .join("\n");

/** Inline code spans of a Markdown file, with the line each is on. */
function codeSpans(file: string): { text: string; line: number }[] {
  const out: { text: string; line: number }[] = [];
  let fenced = false;
  readFileSync(file, "utf8")
    .split("\n")
    .forEach((line, i) => {
      if (line.trimStart().startsWith("```")) {
        fenced = !fenced;
        return;
      }
      if (fenced) return;
      for (const m of line.matchAll(/`([^`\n]+)`/g)) out.push({ text: m[1] as string, line: i + 1 });
    });
  return out;
}

/**
 * Prometheus names of the OpenTelemetry instruments the code creates: `a.b.c` → `a_b_c`, counters
 * with `_total`, histograms with `_bucket`/`_sum`/`_count` (the Prometheus exporter's naming).
 */
function prometheusNames(): Set<string> {
  const names = new Set<string>();
  for (const m of code.matchAll(
    /create(Counter|UpDownCounter|Histogram|ObservableGauge|Gauge|ObservableCounter)\(\s*"([\w.]+)"/g,
  )) {
    const base = (m[2] as string).replace(/\./g, "_");
    names.add(base);
    if (m[1] === "Counter" || m[1] === "ObservableCounter") names.add(`${base}_total`);
    if (m[1] === "Histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(base + s);
  }
  return names;
}

const where = (file: string, line: number) => `${relative(REPO_ROOT, file)}:${line}`;

describe("READMEs", () => {
  it("are found", () => {
    expect(readmes.map((f) => relative(REPO_ROOT, f))).toEqual(
      expect.arrayContaining(["README.md", "mesh/README.md", "services/gateway/README.md"]),
    );
  });

  it("name only metrics the code creates", () => {
    const known = prometheusNames();
    expect(known).toContain("taskmesh_breaker_state");
    const wrong: string[] = [];
    let checked = 0;
    for (const file of readmes) {
      for (const { text, line } of codeSpans(file)) {
        for (const m of text.matchAll(/\b((?:taskmesh|rpc_server)_[a-z0-9_]+)/g)) {
          checked++;
          if (!known.has(m[1] as string)) wrong.push(`${where(file, line)} ${m[1]}`);
        }
      }
    }
    expect(wrong).toEqual([]);
    expect(checked).toBeGreaterThan(5);
  });

  it("name only environment variables the code, scripts or manifests use", () => {
    const wrong: string[] = [];
    let checked = 0;
    for (const file of readmes) {
      for (const { text, line } of codeSpans(file)) {
        // `NAME`, `NAME=value` or `NAME=...`: an upper-case name with an underscore.
        const m = /^([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?:=.*)?$/.exec(text.trim());
        if (!m) continue;
        const name = m[1] as string;
        checked++;
        if (!new RegExp(`\\b${name}\\b`).test(code)) wrong.push(`${where(file, line)} ${name}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(checked).toBeGreaterThan(30);
  });

  it("name only repository paths that exist", () => {
    const wrong: string[] = [];
    let checked = 0;
    for (const file of readmes) {
      for (const { text, line } of codeSpans(file)) {
        const t = text.trim().replace(/[.,:;]+$/, "");
        // A path: words joined by `/`, ending in a file name with an extension or in `/`;
        // not a URL, a glob, a placeholder, an absolute or home path, or a subject/label.
        if (!/^(\.\.?\/)?[\w.@-]+(\/[\w.@-]+)*\/?$/.test(t) || !t.includes("/")) continue;
        if (!/\.\w+$|\/$/.test(t)) continue;
        // A bare `src/` or `dist/` means that folder of whichever workspace the text speaks of.
        if (/^[\w.-]+\/$/.test(t)) continue;
        // `.data/...` is what a run writes (logs, databases, bench results), not a repository file.
        if (/^(@|node_modules|dist\/|\.data\/)/.test(t) || t.startsWith("/")) continue;
        // A third-party .proto import path (buf/validate/..., grpc/health/...): scripts/buf-deps.mjs fetches those.
        if (t.endsWith(".proto") && !/^(proto\/)?taskmesh\//.test(t)) continue;
        // From the root, the README's folder, its workspace, its workspace's src/, or proto/.
        const workspace = /^((?:packages|services)\/[^/]+)\//.exec(relative(REPO_ROOT, file))?.[1];
        const candidates = [
          join(REPO_ROOT, t),
          join(dirname(file), t),
          ...(workspace ? [join(REPO_ROOT, workspace, t), join(REPO_ROOT, workspace, "src", t)] : []),
          ...(t.endsWith(".proto") ? [join(REPO_ROOT, "proto", t)] : []),
        ];
        checked++;
        if (!candidates.some((c) => existsSync(c))) wrong.push(`${where(file, line)} ${t}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(checked).toBeGreaterThan(30);
  });
});
