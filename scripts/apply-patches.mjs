// postinstall: apply patches/ with patch-package (see patches/README.md). A production-only
// install (npm ci --omit=dev in the image's prod-deps stage) has no patch-package; the image copies
// the already-patched packages from its build stage instead, so this only notes the skip.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "node_modules/.bin/patch-package");
if (!existsSync(bin)) {
  console.error("postinstall: patch-package not installed (production install); patches/ not applied here");
} else {
  // Quiet when it works (npm start's first run should show only what a user can act on); all of
  // patch-package's output, and a non-zero exit, when a patch does not apply.
  try {
    const out = execFileSync(bin, [], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    const applied = out.match(/✔/g)?.length ?? 0;
    if (/warning/i.test(out)) process.stderr.write(out);
    console.error(`postinstall: ${applied} patch(es) from patches/ applied`);
  } catch (err) {
    process.stderr.write(`${err.stdout ?? ""}${err.stderr ?? ""}`);
    console.error("postinstall: a patch in patches/ did not apply (see above)");
    process.exit(1);
  }
}
