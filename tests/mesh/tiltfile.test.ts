/**
 * The Tiltfile, checked without Tilt: it parses (Starlark is a syntactic subset of Python, so
 * python3's parser stands in), calls only Tilt's API, names only files that exist, and builds and
 * orders exactly the services of mesh/topology.json, with the images the dev overlay deploys.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type ServiceTopology, TOPOLOGY } from "@taskmesh/platform";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./gen/paths.js";
import { get, renderOverlay } from "./lib/overlays.js";

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
    calls: string[];
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

  it("starts NATS before the services and a caller after its callees", () => {
    expect(topology.nats).toBe("nats");
    expect(text).toMatch(/resource_deps = \[topology\["nats"\]\] \+ svc\["calls"\]/);
    for (const [name, t] of built) {
      expect(topology.services.find((s) => s.name === name)?.calls).toEqual([...t.calls]);
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
