// `buf breaking` against the previous commit. The contracts import third-party protos that live
// in .buf-deps/ (gitignored, see buf-deps.mjs), so a plain `--against .git#ref=HEAD~1` cannot
// compile the old tree; instead the previous commit is checked out into a temporary worktree,
// given the same .buf-deps, built into an image, and compared against.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const buf = join(root, "node_modules/.bin/buf");
const git = (...args) => execFileSync("git", args, { cwd: root, encoding: "utf8" }).trim();

const against = process.argv[2] ?? "HEAD~1";
try {
  git("rev-parse", "--verify", "--quiet", `${against}^{commit}`);
} catch {
  console.log(`buf breaking: no ${against} to compare against (first commit or shallow clone); skipped`);
  process.exit(0);
}
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
