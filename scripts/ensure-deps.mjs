// Installs the project's npm dependencies when they are missing or older than the lockfile, so
// `npm start` and `npm test` work as the first commands after a clone. (better-sqlite3 compiles
// from source on install: the first run takes a minute or two.)
import { execFileSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const marker = join(root, "node_modules/.package-lock.json");
const lock = join(root, "package-lock.json");
const stale = !existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs);
if (stale) {
  console.error("taskmesh: installing dependencies (npm ci)…");
  try {
    execFileSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  } catch {
    // npm ci refuses a lockfile that lacks other platforms' optional binaries (e.g. Biome's
    // darwin build), which a registry without them cannot record; npm install accepts it.
    console.error("taskmesh: npm ci refused the lockfile; falling back to npm install");
    execFileSync("npm", ["install", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  }
}
