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
  execFileSync(bin, [], { cwd: root, stdio: "inherit" });
}
