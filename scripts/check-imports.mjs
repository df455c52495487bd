#!/usr/bin/env node
// Every workspace declares what it imports, declares nothing it does not use, and has no import
// cycle among its own files. `node scripts/check-imports.mjs [root]` prints each problem and
// exits 1 when there is one; tests/repo/imports.test.ts runs it in CI (and on a broken copy).
//
// Production files (src/**, not tests) must find each package in `dependencies`; test files
// (*.test.ts, *.test-util.ts) may also use the workspace's devDependencies and the root's
// (vitest, ...). Type-only imports count: `tsc -b` resolves them from the workspace too.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const BUILTINS = new Set(builtinModules);
const SOURCE = /\.(ts|tsx|mts|mjs|js)$/;
const TEST_FILE = /\.test(-util)?\.(ts|tsx)$|\.test\.(ts|tsx)$/;
// Packages a workspace may declare without importing them from code: type packages and
// executables or plugins used by its build scripts (vite's plugin is named in vite.config.ts,
// which the scan covers).
const DECLARED_WITHOUT_IMPORT = /^@types\//;

/** `import … from "x"`, `export … from "x"`, `import("x")`, `import "x"`. */
const SPECIFIER =
  /(?:^|[\s;])(?:import|export)\s(?:[^"'`;]*?\sfrom\s)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

function packageName(spec) {
  if (spec.startsWith("node:") || BUILTINS.has(spec.split("/")[0])) return undefined;
  if (spec.startsWith(".") || spec.startsWith("/")) return undefined;
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

function walk(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name === "dist" || name.startsWith(".")) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (SOURCE.test(name) && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}

function importsOf(file) {
  const text = stripComments(readFileSync(file, "utf8"));
  const out = [];
  for (const m of text.matchAll(SPECIFIER)) out.push(m[1] ?? m[2]);
  return out;
}

function resolveRelative(from, spec, files) {
  const base = resolve(from, "..", spec);
  const candidates = [
    base,
    base.replace(/\.js$/, ".ts"),
    base.replace(/\.js$/, ".tsx"),
    `${base}.ts`,
    join(base, "index.ts"),
  ];
  return candidates.find((c) => files.has(c));
}

/** Cycles among `files` (absolute paths) following relative imports; each cycle once, as a path list. */
function cycles(files) {
  const set = new Set(files);
  const edges = new Map(
    files.map((f) => [
      f,
      importsOf(f)
        .filter((s) => s.startsWith("."))
        .map((s) => resolveRelative(f, s, set))
        .filter(Boolean),
    ]),
  );
  const found = [];
  const seen = new Set();
  const state = new Map(); // 1 = on stack, 2 = done
  const stack = [];
  const visit = (f) => {
    state.set(f, 1);
    stack.push(f);
    for (const g of edges.get(f) ?? []) {
      if (state.get(g) === 1) {
        const cycle = stack.slice(stack.indexOf(g));
        const key = [...cycle].sort().join("|");
        if (!seen.has(key)) {
          seen.add(key);
          found.push([...cycle, g]);
        }
      } else if (!state.has(g)) visit(g);
    }
    stack.pop();
    state.set(f, 2);
  };
  for (const f of files) if (!state.has(f)) visit(f);
  return found;
}

export function checkImports(root) {
  const rootPkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const rootDev = new Set(Object.keys(rootPkg.devDependencies ?? {}));
  const workspaces = (rootPkg.workspaces ?? []).flatMap((pattern) => {
    if (!pattern.endsWith("/*")) return [pattern];
    const dir = join(root, pattern.slice(0, -2));
    return existsSync(dir) ? readdirSync(dir).map((n) => `${pattern.slice(0, -2)}/${n}`) : [];
  });
  const problems = [];
  for (const ws of workspaces) {
    const dir = join(root, ws);
    if (!existsSync(join(dir, "package.json"))) continue;
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const deps = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
    const devDeps = new Set(Object.keys(pkg.devDependencies ?? {}));
    const files = walk(dir);
    const used = new Set();
    for (const file of files) {
      const isTest = TEST_FILE.test(file) || /\/(tests?|e2e)\//.test(relative(dir, file));
      for (const spec of importsOf(file)) {
        const name = packageName(spec);
        if (!name || name === pkg.name) continue;
        used.add(name);
        const ok =
          deps.has(name) ||
          (isTest && (devDeps.has(name) || rootDev.has(name))) ||
          (!isTest && devDeps.has(name) && /config\.(ts|mjs|js)$/.test(file));
        if (!ok) {
          const where = devDeps.has(name) ? " (only in devDependencies, but this file ships)" : "";
          problems.push(`${relative(root, file)} imports "${name}", which ${ws}/package.json does not declare${where}`);
        }
      }
    }
    for (const name of [...deps, ...devDeps]) {
      if (
        !used.has(name) &&
        !DECLARED_WITHOUT_IMPORT.test(name) &&
        !(pkg.taskmeshDeclaredWithoutImport ?? []).includes(name)
      ) {
        problems.push(`${ws}/package.json declares "${name}", which no file of ${ws} imports`);
      }
    }
    for (const cycle of cycles(files)) {
      problems.push(`import cycle in ${ws}: ${cycle.map((f) => relative(dir, f)).join(" → ")}`);
    }
  }
  return [...new Set(problems)];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(fileURLToPath(import.meta.url), "..", ".."));
  const problems = checkImports(root);
  for (const p of problems) console.error(`check-imports: ${p}`);
  console.log(`check-imports: ${problems.length} problem(s)`);
  process.exit(problems.length > 0 ? 1 : 0);
}
