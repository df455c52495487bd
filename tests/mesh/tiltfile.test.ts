/**
 * The Tiltfile, checked without Tilt: it parses (Starlark is a syntactic subset of Python, so
 * python3's parser stands in), calls only Tilt's API, names only files that exist, and builds and
 * orders exactly the services of mesh/topology.json, with the images the dev overlay deploys.
 * Then the Tiltfile is run for real in go.starlark.net with recorder builtins (lib/tilt-record.ts)
 * and what it would do is checked against the rendered overlay and the Dockerfile.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type ServiceTopology, TOPOLOGY } from "@taskmesh/platform";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./gen/paths.js";
import { copySources, parseDockerfile, type Stage } from "./lib/dockerfile.js";
import { build, type Resource, readDocs } from "./lib/kustomize.js";
import { get, renderOverlay } from "./lib/overlays.js";
import { evaluateTiltfile, type TiltRecording } from "./lib/tilt-record.js";

const TILTFILE = join(REPO_ROOT, "Tiltfile");
const text = readFileSync(TILTFILE, "utf8");
const python = (() => {
  try {
    execFileSync("python3", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

interface TiltAst {
  calls: string[];
  defined: string[];
  strings: string[];
}
const ast = python
  ? (JSON.parse(
      execFileSync("python3", [join(REPO_ROOT, "tests/mesh/lib/starlark-ast.py"), TILTFILE], { encoding: "utf8" }),
    ) as TiltAst)
  : undefined;

/** Tilt's Tiltfile API (docs.tilt.dev/api.html) and the Starlark builtins the file may use. */
const TILT_API = new Set([
  "allow_k8s_contexts",
  "docker_build",
  "fail",
  "fall_back_on",
  "k8s_context",
  "k8s_resource",
  "k8s_yaml",
  "kustomize",
  "link",
  "local",
  "local_resource",
  "os.getenv",
  "os.path.exists",
  "os.path.join",
  "port_forward",
  "read_json",
  "run",
  "sync",
  "version_settings",
  "warn",
  "any",
  "list",
  "str",
]);

interface TiltTopology {
  nats: string;
  services: {
    name: string;
    grpcPort: number;
    startAfter: string[];
    edge: boolean;
    dockerfile: string;
    workspaces: string[];
  }[];
}
const topology = JSON.parse(readFileSync(join(REPO_ROOT, "mesh/topology.json"), "utf8")) as TiltTopology;
const built = (Object.entries(TOPOLOGY) as [string, ServiceTopology][]).filter(([, t]) => t.built);

describe("Tiltfile", () => {
  it("parses", () => {
    expect(ast?.calls.length).toBeGreaterThan(10);
  });

  it("calls only Tilt's API, methods of its own values, or what it defines", () => {
    const own = new Set(ast?.defined);
    const unknown = (ast?.calls ?? []).filter((c) => {
      if (TILT_API.has(c) || c.startsWith("<value>.")) return false;
      const [head = "", ...rest] = c.split(".");
      return !(own.has(head) && rest.length > 0) && !own.has(c);
    });
    expect(unknown).toEqual([]);
  });

  it("names only repository files that exist", () => {
    // Tokens that look like repository paths; addons under $ISTIO_HOME and kubectl's svc/<name> are not ours.
    const istioHome = new Set(["samples", "addons", "jaeger.yaml", "prometheus.yaml", "kiali.yaml"]);
    const tokens = (ast?.strings ?? [])
      .flatMap((s) => s.split(/[\s'`()]+/))
      .map((t) => t.replace(/[.,;:]+$/, ""))
      .filter((t) => /^[\w.-]+(\/[\w.*-]+)*\/?$/.test(t))
      .filter((t) => t.includes("/") || /\.(json|ya?ml|ts|md)$/.test(t))
      .filter(
        (t) =>
          !istioHome.has(t) &&
          !t.startsWith("svc/") &&
          !t.startsWith("samples/") &&
          !t.startsWith("taskmesh/") &&
          !t.includes("*"),
      )
      .filter((t) => !t.startsWith("node_modules/"));
    expect(tokens).toEqual(expect.arrayContaining(["mesh/overlays/dev", "mesh/topology.json", "buf.gen.yaml"]));
    // Watched paths (`deps = [...]`) may be bare directory names.
    const deps = [...text.matchAll(/\bdeps = \[([^\]]*)\]/g)].flatMap((m) =>
      [...(m[1] ?? "").matchAll(/"([^"]+)"/g)].map((q) => q[1] ?? ""),
    );
    expect(deps).toContain("proto");
    for (const t of new Set([...tokens, ...deps])) expect(existsSync(join(REPO_ROOT, t)), t).toBe(true);
    for (const s of topology.services) {
      expect(existsSync(join(REPO_ROOT, s.dockerfile)), s.dockerfile).toBe(true);
      for (const w of s.workspaces) expect(existsSync(join(REPO_ROOT, w, "src")), w).toBe(true);
    }
  });

  it("applies the dev overlay, refuses remote clusters and stops kindly without Istio", () => {
    expect(text).toContain('"dev": "mesh/overlays/dev"');
    expect(text).toMatch(/k8s_yaml\(kustomize\(OVERLAYS\[overlay\]\)\)/);
    expect(text).toMatch(/allow_k8s_contexts\(ctx\)/);
    for (const ctx of ["kind-", "k3d-", "minikube", "docker-desktop", "orbstack"]) expect(text).toContain(`"${ctx}"`);
    expect(text).toMatch(/kubectl get crd virtualservices\.networking\.istio\.io/);
    expect(text).toMatch(/istioctl install -y -f mesh\/istio\/install\.yaml/);
  });

  it("builds one image per built service, with live update, named as the dev overlay deploys it", () => {
    expect(topology.services.map((s) => s.name).sort()).toEqual(built.map(([n]) => n).sort());
    expect(text).toMatch(/docker_build\(\s*"taskmesh\/" \+ name/);
    expect(text).toMatch(/live_update = \[/);
    expect(text).toMatch(/sync\(w \+ "\/src", "\/app\/" \+ w \+ "\/src"\)/);
    expect(text).toContain('target = "dev"');
    const dev = renderOverlay("dev");
    for (const s of topology.services) {
      const image = get<IDeployment>(dev, "Deployment", s.name).spec?.template.spec?.containers[0]?.image;
      expect(image).toBe(`taskmesh/${s.name}`);
    }
  });

  it("forwards the gateway, the ingress, Jaeger and Kiali, and labels its resources", () => {
    expect(text).toMatch(/port_forward\(8080, svc\["grpcPort"\]/);
    expect(text).toContain("svc/istio-ingressgateway 8081:80");
    expect(text).toMatch(/port_forward\(16686, 16686, name = "Jaeger"\)/);
    expect(text).toMatch(/port_forward\(20001, 20001, name = "Kiali"\)/);
    expect(text).toMatch(/samples", "addons"/);
    for (const label of ["infra", "services", "edge", "observability", "contracts"])
      expect(text).toContain(`"${label}"`);
    expect(text).toMatch(/"buf-generate",\s*cmd = "npm run generate"/);
  });
});

/** Images the manifests deploy that nobody pulls from a registry: untagged `taskmesh/...` refs Tilt builds. */
const builtImage = (image: string) => !image.includes(":") && !image.includes("@");

function workloads(resources: Resource[]) {
  return resources.filter((r) => ["Deployment", "StatefulSet", "DaemonSet", "Job"].includes(r.kind));
}
function containersOf(r: Resource): { image: string; ports?: { containerPort: number }[] }[] {
  const spec = (r as unknown as { spec: { template: { spec: { containers: [] } } } }).spec;
  return spec.template.spec.containers;
}
/** What k8s_yaml was given, rendered: kustomize() directories through tests/mesh/lib/kustomize. */
function applied(rec: TiltRecording): Resource[] {
  return rec.k8sYaml.flatMap((y) => {
    if (typeof y === "object" && !Array.isArray(y) && y.kind === "kustomize")
      return build(join(REPO_ROOT, y.pathToDir));
    return (Array.isArray(y) ? y : [y]).flatMap((f) => readDocs(join(REPO_ROOT, f as string)));
  });
}
/** The stages a target builds on (its FROM chain inside the file), the target first. */
function stageChain(stages: Stage[], target: string): Stage[] {
  const chain: Stage[] = [];
  let s = stages.find((x) => x.name === target);
  while (s) {
    chain.push(s);
    const from = s.from;
    s = stages.find((x) => x.name === from);
  }
  return chain;
}
/** A path is in Tilt's `only` when it is one of its entries or inside one (entries are files or directories). */
const insideOnly = (only: string[], p: string) => only.some((o) => p === o || p.startsWith(`${o.replace(/\/$/, "")}/`));

/** A cycle in resource_deps, as the names along it, or undefined. */
function findCycle(deps: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (n: string): string[] | undefined => {
    if (state.get(n) === "done") return undefined;
    if (state.get(n) === "open") return [...path.slice(path.indexOf(n)), n];
    state.set(n, "open");
    path.push(n);
    for (const d of deps.get(n) ?? []) {
      const c = visit(d);
      if (c) return c;
    }
    path.pop();
    state.set(n, "done");
    return undefined;
  };
  for (const n of deps.keys()) {
    const c = visit(n);
    if (c) return c;
  }
  return undefined;
}

describe.each(["dev", "drill"])("Tiltfile evaluated by go.starlark.net, TASKMESH_OVERLAY=%s", (overlay) => {
  const rec = evaluateTiltfile({ env: { TASKMESH_OVERLAY: overlay } });
  const resources = applied(rec);
  const byName = new Map(workloads(resources).map((w) => [w.metadata.name, w]));

  it("loads without an error under Tilt's dialect and parameter names", () => {
    expect(rec.execError).toBeUndefined();
    expect(rec.failed).toBeUndefined();
    expect(rec.k8sYaml).toContainEqual(
      expect.objectContaining({ kind: "kustomize", pathToDir: `mesh/overlays/${overlay}` }),
    );
  });

  it("orders start-up as a graph without cycles, each service after NATS only if it uses NATS", () => {
    const deps = new Map<string, string[]>();
    for (const r of rec.k8sResources) deps.set(r.workload, r.resource_deps);
    for (const r of rec.localResources) deps.set(r.name, r.resource_deps);
    for (const [name, ds] of deps) for (const d of ds) expect(deps.has(d), `${name} waits for unknown ${d}`).toBe(true);
    expect(findCycle(deps)).toBeUndefined();
    for (const [name, t] of built) {
      expect(deps.get(name), name).toEqual(t.nats ? [topology.nats] : []);
    }
  });

  it("names in k8s_resource only workloads the applied YAML renders, and gives every workload a resource", () => {
    const named = rec.k8sResources.map((r) => r.workload);
    for (const n of named) expect(byName.has(n), `k8s_resource("${n}") has no workload`).toBe(true);
    expect([...byName.keys()].sort()).toEqual([...named].sort());
  });

  it("builds exactly the images the manifests deploy (and pulls the rest by tag)", () => {
    const deployed = new Set(
      workloads(resources)
        .flatMap(containersOf)
        .map((c) => c.image)
        .filter(builtImage),
    );
    expect(new Set(rec.dockerBuilds.map((b) => b.ref))).toEqual(deployed);
    expect(rec.dockerBuilds.length).toBe(built.length);
  });

  it("builds each image from an existing Dockerfile with every path it copies inside `only`", () => {
    for (const b of rec.dockerBuilds) {
      expect(existsSync(join(REPO_ROOT, b.context)), b.context).toBe(true);
      const file = join(REPO_ROOT, b.context, b.dockerfile);
      expect(existsSync(file), b.dockerfile).toBe(true);
      // Docker substitutes build arguments in COPY sources; so do we.
      const text = readFileSync(file, "utf8").replace(/\$\{(\w+)\}/g, (m, arg: string) => b.build_args[arg] ?? m);
      const chain = stageChain(parseDockerfile(text).stages, b.target);
      expect(chain[0]?.name, `${b.ref} target ${b.target}`).toBe(b.target);
      const sources = chain
        .flatMap((s) => s.instructions)
        .filter((i) => i.keyword === "COPY")
        .map((i) => copySources(i.args))
        .filter((c) => c.from === undefined)
        .flatMap((c) => c.sources);
      expect(sources).toContain("patches");
      for (const src of sources) {
        expect(src, `${b.ref}: COPY ${src} has an unsubstituted variable`).not.toMatch(/\$/);
        expect(insideOnly(b.only, src), `${b.ref}: COPY ${src} is outside docker_build(only = ...)`).toBe(true);
        expect(existsSync(join(REPO_ROOT, b.context, src)), `${b.ref}: ${src} exists`).toBe(true);
      }
      for (const step of b.live_update) {
        if (step.kind === "sync") expect(insideOnly(b.only, step.local_path), step.local_path).toBe(true);
        if (step.kind === "fall_back_on")
          for (const f of [step.files].flat()) expect(existsSync(join(REPO_ROOT, f)), f).toBe(true);
      }
    }
  });

  it("forwards only ports the workload's containers listen on", () => {
    const forwards = rec.k8sResources.flatMap((r) => r.port_forwards.map((f) => ({ workload: r.workload, ...f })));
    expect(forwards.map((f) => f.local_port)).toContain(8080);
    for (const f of forwards) {
      const ports = containersOf(byName.get(f.workload) as Resource).flatMap((c) => c.ports ?? []);
      expect(
        ports.map((p) => p.containerPort),
        `${f.workload} ${f.local_port}:${f.container_port}`,
      ).toContain(f.container_port ?? f.local_port);
    }
  });
});

describe("Tiltfile evaluated by go.starlark.net, guards", () => {
  it("refuses a kube context that is not a local cluster", () => {
    const rec = evaluateTiltfile({ context: "gke_prod_europe-west1_main" });
    expect(rec.failed).toMatch(/not a local cluster/);
    expect(rec.dockerBuilds).toEqual([]);
  });

  it("stops with the install command when Istio is missing", () => {
    const rec = evaluateTiltfile({ istio: false });
    expect(rec.failed).toMatch(/istioctl install -y -f mesh\/istio\/install\.yaml/);
  });

  it("refuses an unknown overlay by name", () => {
    expect(evaluateTiltfile({ env: { TASKMESH_OVERLAY: "staging" } }).failed).toMatch(
      /TASKMESH_OVERLAY must be one of/,
    );
  });
});
