// Installs the project's npm dependencies when they are missing or older than the lockfile, so
// `npm start` and `npm test` work as the first commands after a clone. (better-sqlite3 compiles
// from source on install: the first run takes a minute or two.)
import { spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const marker = join(root, "node_modules/.package-lock.json");
const lock = join(root, "package-lock.json");
const stale = !existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs);
if (stale) {
  const began = Date.now();
  console.error(
    "taskmesh: installing dependencies (npm ci; the first time about 2 minutes, better-sqlite3 compiles from source)…",
  );
  // npm's warnings here are about packages' engines and deprecations, nothing a user of taskmesh
  // can act on; errors still print (and stop the start). A dot every 10 s shows it is alive.
  const ticker = setInterval(() => process.stderr.write("."), 10_000);
  const npm = spawn("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: root, stdio: "inherit" });
  const code = await new Promise((resolve) => npm.on("close", resolve));
  clearInterval(ticker);
  if (code !== 0) {
    console.error(`\ntaskmesh: npm ci failed (exit ${code}, see above)`);
    process.exit(1);
  }
  console.error(`\ntaskmesh: dependencies installed in ${Math.round((Date.now() - began) / 1000)} s`);
}
