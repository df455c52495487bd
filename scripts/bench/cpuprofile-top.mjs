// Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by package/file, the
// top N of each, as percentages of the sampled time (idle and GC shown separately).
//   node scripts/bench/cpuprofile-top.mjs <file.cpuprofile> [N]
import { readFileSync } from "node:fs";

const [file, n = "25"] = process.argv.slice(2);
const prof = JSON.parse(readFileSync(file, "utf8"));
const byId = new Map(prof.nodes.map((node) => [node.id, node]));
const self = new Map();
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] ?? 0;
  self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + dt);
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const fnTime = new Map();
const fileTime = new Map();
for (const [id, t] of self) {
  const { callFrame: f } = byId.get(id);
  const where = f.url.replace(/^file:\/\//, "").replace(/.*node_modules\//, "");
  const fn = `${f.functionName || "(anonymous)"} ${where}:${f.lineNumber + 1}`;
  fnTime.set(fn, (fnTime.get(fn) ?? 0) + t);
  const pkg = where.startsWith("@") ? where.split("/").slice(0, 2).join("/") : where.split("/")[0] || f.functionName;
  const key = where.includes("/work/") ? where.replace(/.*\/(services|packages)\//, "$1/") : pkg;
  fileTime.set(key, (fileTime.get(key) ?? 0) + t);
}
const top = (m) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, Number(n))
    .map(([k, t]) => `${((t / total) * 100).toFixed(1).padStart(5)}%  ${k}`)
    .join("\n");
console.log(
  `${file}: ${(total / 1e6).toFixed(1)} s sampled\n\nby function (self):\n${top(fnTime)}\n\nby file:\n${top(fileTime)}`,
);
