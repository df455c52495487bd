/**
 * The images, checked without a Docker engine: one multi-stage Dockerfile (services/Dockerfile,
 * the service named by the SERVICE build argument) on a supported Node LTS, better-sqlite3 compiled
 * in the build stages, only that service's production dependencies in a non-root runtime, COPY
 * sources that exist and are not .dockerignored. Each built service is checked with its SERVICE.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type ServiceTopology, TOPOLOGY } from "@taskmesh/platform";
import { describe, expect, it } from "vitest";
import { DOCKERFILE, imageWorkspaces, NODE_IMAGE, SHARED_WORKSPACES } from "./gen/dockerfile.js";
import { REPO_ROOT } from "./gen/paths.js";
import { copySources, dockerignore, parseDockerfile, type Stage } from "./lib/dockerfile.js";

const built = (Object.entries(TOPOLOGY) as [string, ServiceTopology][]).filter(([, t]) => t.built);
const ignored = dockerignore(readFileSync(join(REPO_ROOT, ".dockerignore"), "utf8"));
const runs = (stage: Stage | undefined) =>
  (stage?.instructions ?? []).filter((i) => i.keyword === "RUN").map((i) => i.args);

/** tsconfig project references, transitively: what `tsc -b` will want to find in the image. */
function tsReferences(dir: string, seen = new Set<string>()): Set<string> {
  if (seen.has(dir)) return seen;
  seen.add(dir);
  const tsconfig = JSON.parse(readFileSync(join(REPO_ROOT, dir, "tsconfig.json"), "utf8")) as {
    references?: { path: string }[];
  };
  for (const ref of tsconfig.references ?? []) tsReferences(join(dir, ref.path).replace(/\/$/, ""), seen);
  return seen;
}

const file = join(REPO_ROOT, DOCKERFILE);
/** The Dockerfile as Docker reads it with `--build-arg SERVICE=<name>`. */
const withService = (name: string) => readFileSync(file, "utf8").replaceAll("$" + "{SERVICE}", name);

describe("the services' Dockerfile", () => {
  it("is one file for every service: no service keeps its own copy", () => {
    expect(existsSync(file)).toBe(true);
    for (const [name] of built) expect(existsSync(join(REPO_ROOT, "services", name, "Dockerfile")), name).toBe(false);
  });

  it("stops at once, naming the build argument, when built without SERVICE", () => {
    const toolchain = parseDockerfile(readFileSync(file, "utf8")).stages.find((s) => s.name === "toolchain");
    const ins = toolchain?.instructions ?? [];
    const arg = ins.findIndex((i) => i.keyword === "ARG" && i.args === "SERVICE");
    const firstUse = ins.findIndex((i) => i.args.includes("$" + "{SERVICE}") && i.keyword === "COPY");
    expect(arg).toBeGreaterThanOrEqual(0);
    expect(ins.slice(arg, firstUse).map((i) => i.args)).toContainEqual(
      expect.stringMatching(/test -n .*--build-arg SERVICE=/),
    );
  });
});

describe.each(built)("services/Dockerfile --build-arg SERVICE=%s", (name) => {
  const parsed = existsSync(file) ? parseDockerfile(withService(name)) : undefined;
  const stage = (n: string) => parsed?.stages.find((s) => s.name === n);

  it("exists", () => {
    expect(parsed).toBeDefined();
  });

  it("builds in stages from a supported Node LTS, the runtime last", () => {
    expect(parsed?.stages.map((s) => s.name)).toEqual(["toolchain", "build", "web", "dev", "prod-deps", "runtime"]);
    // Node 22 LTS, Debian bookworm (glibc) slim; not 20, which is past its end of life.
    expect(NODE_IMAGE).toMatch(/^node:22-bookworm-slim$/);
    expect(stage("toolchain")?.from).toBe(NODE_IMAGE);
    expect(stage("runtime")?.from).toBe(NODE_IMAGE);
    expect(stage("web")?.from).toBe(NODE_IMAGE);
  });

  it("builds the web client with Vite from the web workspace alone, and the gateway serves what the image holds", () => {
    expect(runs(stage("web"))).toEqual([
      expect.stringMatching(/npm ci -w @taskmesh\/web$/),
      "npm run build -w @taskmesh/web",
    ]);
    // Vite's input: the page, its config and sources, and the generated clients it bundles.
    const sources = (stage("web")?.instructions ?? [])
      .filter((i) => i.keyword === "COPY")
      .flatMap((i) => copySources(i.args).sources);
    for (const path of ["web/index.html", "web/vite.config.ts", "web/src", "web/public", "packages/gen/src"])
      expect(sources).toContain(path);
    for (const s of ["runtime", "dev"]) {
      const webCopy = (stage(s)?.instructions ?? [])
        .filter((i) => i.keyword === "COPY")
        .map((i) => copySources(i.args))
        .find((c) => c.from === "web");
      expect(webCopy?.sources, s).toEqual(["/app/web/dist"]);
    }
  });

  it("compiles better-sqlite3 and the TypeScript in the build stages", () => {
    expect(runs(stage("toolchain")).join("\n")).toMatch(/apt-get install .*python3.*make.*g\+\+/);
    const env = stage("toolchain")?.instructions.find((i) => i.keyword === "ENV")?.args ?? "";
    expect(env).toContain("npm_config_build_from_source=true");
    expect(runs(stage("build"))).toEqual(expect.arrayContaining([expect.stringMatching(/npm ci$/)]));
    expect(runs(stage("build"))).toContain(`npx tsc -b services/${name}`);
  });

  it("ships only this service's production dependencies", () => {
    expect(runs(stage("prod-deps"))).toEqual([
      expect.stringMatching(new RegExp(`npm ci --omit=dev -w @taskmesh/${name}$`)),
    ]);
    const runtime = stage("runtime")?.instructions ?? [];
    const copies = runtime.filter((i) => i.keyword === "COPY").map((i) => copySources(i.args));
    // prod-deps holds this service's dependencies; web holds only the built page (no node_modules).
    expect(copies).toEqual([
      { from: "prod-deps", sources: ["/app"] },
      { from: "web", sources: ["/app/web/dist"] },
    ]);
  });

  it("runs node on the service's dist/main.js as a non-root numeric user", () => {
    for (const s of ["runtime", "dev"]) {
      const ins = stage(s)?.instructions ?? [];
      const users = ins.filter((i) => i.keyword === "USER").map((i) => i.args);
      const last = users[users.length - 1] ?? "";
      expect(last, s).toMatch(/^\d+(:\d+)?$/);
      expect(Number(last.split(":")[0]), s).toBeGreaterThan(0);
      // CMD's exec form expands no build argument: it runs from the service's folder.
      const workdirs = ins.filter((i) => i.keyword === "WORKDIR").map((i) => i.args);
      expect(workdirs[workdirs.length - 1], s).toBe(`/app/services/${name}`);
      const argv = JSON.parse(ins.find((i) => i.keyword === "CMD")?.args ?? "[]") as string[];
      expect(argv[0]).toBe("node");
      expect(argv[argv.length - 1]).toBe("dist/main.js");
    }
  });

  it("copies from the context only paths that exist and .dockerignore keeps", () => {
    const sources = (parsed?.stages ?? [])
      .flatMap((s) => s.instructions)
      .filter((i) => i.keyword === "COPY")
      .map((i) => copySources(i.args))
      .filter((c) => c.from === undefined)
      .flatMap((c) => c.sources);
    expect(sources.length).toBeGreaterThan(3);
    for (const src of sources) {
      expect(existsSync(join(REPO_ROOT, src)), `${src} exists`).toBe(true);
      expect(ignored(src), `${src} is not .dockerignored`).toBe(false);
    }
  });

  it("copies every workspace the service's package.json and tsconfig references reach", () => {
    // The template copies the shared workspaces and the service: a service linking another fails here.
    const copied = new Set([...SHARED_WORKSPACES, `services/${name}`]);
    for (const w of imageWorkspaces(name)) expect(copied, w.dir).toContain(w.dir);
    for (const dir of tsReferences(`services/${name}`)) expect(copied, dir).toContain(dir);
    const text = withService(name);
    for (const dir of copied) expect(text).toContain(`COPY ${dir}/src ${dir}/src`);
  });
});

describe(".dockerignore", () => {
  it("keeps host builds and installs out of the context", () => {
    for (const p of [
      "node_modules/x",
      "packages/platform/node_modules/y",
      "services/users/dist/main.js",
      ".git/HEAD",
    ]) {
      expect(ignored(p), p).toBe(true);
    }
    expect(ignored("packages/gen/src/taskmesh/tasks/v1/tasks_pb.ts")).toBe(false);
    expect(ignored("services/users/src/main.ts")).toBe(false);
  });
});
