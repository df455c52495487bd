import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** What the web build is made from: a change to any of these makes web/dist stale. */
const WEB_SOURCES = [
  "web/src",
  "web/public",
  "web/index.html",
  "web/vite.config.ts",
  "web/package.json",
  "packages/gen/src",
];

function newestMtime(path: string): number {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)));
  return newest;
}

export interface WebBuildState {
  /** web/dist, which the gateway serves (WEB_ROOT). */
  dist: string;
  /** True when web/dist/index.html is missing or older than a source. */
  stale: boolean;
}

/** Whether the web client under `root`/web needs building (sources newer than web/dist/index.html). */
export function webBuildState(root: string): WebBuildState {
  const dist = join(root, "web", "dist");
  const index = join(dist, "index.html");
  if (!existsSync(index)) return { dist, stale: true };
  const built = statSync(index).mtimeMs;
  return { dist, stale: WEB_SOURCES.some((s) => newestMtime(join(root, s)) > built) };
}

/**
 * Builds the web client with Vite when it is missing or older than its sources; a no-op when up
 * to date. Returns whether it built. Throws (with Vite's output on stderr) when the build fails.
 */
export function buildWebIfStale(root: string, opts: { quiet?: boolean } = {}): boolean {
  const state = webBuildState(root);
  if (!state.stale) return false;
  const vite = [join(root, "web", "node_modules", ".bin", "vite"), join(root, "node_modules", ".bin", "vite")].find(
    (p) => existsSync(p),
  );
  if (!vite) throw new Error("vite is not installed: run `npm install` at the repository root");
  execFileSync(vite, ["build", "--logLevel", opts.quiet ? "warn" : "info"], {
    cwd: join(root, "web"),
    // Under vitest NODE_ENV is "test", which would give React's development build.
    env: { ...process.env, NODE_ENV: "production" },
    stdio: opts.quiet ? ["ignore", "ignore", "inherit"] : "inherit",
  });
  return true;
}
