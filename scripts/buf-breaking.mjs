// `buf breaking` against the last main-branch state this change builds on (buf-baseline.mjs: the
// merge base with main on a branch, HEAD~1 on main; BUF_AGAINST=<ref> or an argument overrides).
// The contracts import third-party protos that live in .buf-deps/ (gitignored, see buf-deps.mjs),
// so a plain `--against .git#ref=...` cannot compile the old tree; instead that commit is checked
// out into a temporary worktree, given the same .buf-deps, built into an image, and compared against.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BaselineError, findBaseline } from "./buf-baseline.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const buf = join(root, "node_modules/.bin/buf");
const git = (...args) => execFileSync("git", args, { cwd: root, encoding: "utf8" }).trim();

let baseline;
try {
  baseline = findBaseline({ cwd: root, against: process.argv[2] ?? process.env.BUF_AGAINST });
} catch (e) {
  if (!(e instanceof BaselineError)) throw e;
  console.error(`buf breaking: ${e.message}`);
  process.exit(1);
}
if (baseline.commit === undefined) {
  console.log(`buf breaking: ${baseline.why}; there is no earlier state to compare with`);
  process.exit(0);
}
const against = baseline.commit;
console.log(`buf breaking: comparing with ${against.slice(0, 12)} (${baseline.why})`);
if (!git("ls-tree", "--name-only", against, "proto")) {
  console.log(`buf breaking: ${against} has no proto/ directory; nothing to compare`);
  process.exit(0);
}
execFileSync(process.execPath, [join(root, "scripts/buf-deps.mjs")], { stdio: "inherit" });
const tmp = mkdtempSync(join(tmpdir(), "taskmesh-breaking-"));
try {
  const tree = join(tmp, "tree");
  git("worktree", "add", "--detach", tree, against);
  try {
    cpSync(join(root, ".buf-deps"), join(tree, ".buf-deps"), { recursive: true });
    const image = join(tmp, "previous.binpb");
    execFileSync(buf, ["build", "proto", "-o", image], { cwd: tree, stdio: "inherit" });
    execFileSync(buf, ["breaking", "proto", "--against", image], { cwd: root, stdio: "inherit" });
    console.log(`buf breaking: no breaking change against ${against}`);
  } finally {
    git("worktree", "remove", "--force", tree);
  }
} catch (e) {
  console.error(`buf breaking: failed (${e instanceof Error ? e.message.split("\n")[0] : e})`);
  process.exitCode = 1;
} finally {
  if (existsSync(tmp)) rmSync(tmp, { recursive: true, force: true });
}
