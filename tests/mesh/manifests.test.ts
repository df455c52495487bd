/**
 * Every manifest under mesh/ is valid against the Kubernetes and Istio schemas
 * (@kubernetes-models), and every overlay renders — with kubectl's kustomize where installed, and
 * always with tests/mesh/lib/kustomize.ts, whose output must then equal kubectl's.
 */
import { basename, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./gen/paths.js";
import { applyJsonPatch, type Resource, readDocs, referencedFiles, resourceId } from "./lib/kustomize.js";
import { validateResource } from "./lib/models.js";
import { kubectl, kubectlKustomize, meshYamlFiles, OVERLAYS, overlayDir, renderOverlay } from "./lib/overlays.js";

const manifestFiles = meshYamlFiles().filter((f) => basename(f) !== "kustomization.yaml");
const byId = (rs: Resource[]) => new Map(rs.map((r) => [resourceId(r), r]));

describe("manifests under mesh/", () => {
  it.each(manifestFiles.map((f) => relative(REPO_ROOT, f)))("%s validates against its schema", (file) => {
    const docs = readDocs(`${REPO_ROOT}/${file}`);
    expect(docs.length).toBeGreaterThan(0);
    for (const doc of docs) validateResource(doc);
  });

  it("rejects a manifest that breaks its schema (the validation can fail)", () => {
    const vs: Resource = {
      apiVersion: "security.istio.io/v1",
      kind: "AuthorizationPolicy",
      metadata: { name: "bad" },
      spec: { rules: [{ to: [{ operation: { ports: [50051] } }] }] },
    };
    expect(() => validateResource(vs)).toThrow(/ports\/0 must be string/);
    expect(() => validateResource({ apiVersion: "example.com/v1", kind: "Thing", metadata: { name: "x" } })).toThrow(
      /no @kubernetes-models model/,
    );
  });
});

describe.each(OVERLAYS)("overlay %s", (overlay) => {
  const rendered = renderOverlay(overlay);

  it("names only files that exist", () => {
    const missing = referencedFiles(overlayDir(overlay)).filter((f) => {
      try {
        readDocs(f.endsWith("kustomization.yaml") || f.endsWith(".yaml") ? f : `${f}/kustomization.yaml`);
        return false;
      } catch {
        return true;
      }
    });
    expect(missing).toEqual([]);
  });

  it("renders resources that all validate, each once", () => {
    expect(rendered.length).toBeGreaterThan(10);
    for (const r of rendered) validateResource(r);
    expect(new Set(rendered.map(resourceId)).size).toBe(rendered.length);
  });

  it("points the gateway's WEB_ROOT at the web client its image holds, and no other service's", () => {
    const webRoots = rendered
      .filter((r) => r.kind === "Deployment" || r.kind === "StatefulSet")
      .flatMap((r) => {
        const containers = (
          r as unknown as {
            spec: { template: { spec: { containers: { name: string; env?: { name: string; value?: string }[] }[] } } };
          }
        ).spec.template.spec.containers;
        return containers.flatMap((c) =>
          (c.env ?? []).filter((e) => e.name === "WEB_ROOT").map((e) => [c.name, e.value]),
        );
      });
    // services/Dockerfile copies the web stage's build to /app/web/dist (tests/mesh/dockerfiles.test.ts).
    expect(webRoots).toEqual([["gateway", "/app/web/dist"]]);
  });

  // kubectl comes with the machine image here and in CI; without it this fails rather than skips.
  it("renders exactly as kubectl kustomize does", () => {
    expect(kubectl(), "kubectl not found on PATH: install kubectl to compare with real kustomize").toBeTruthy();
    const theirs = byId(kubectlKustomize(overlay));
    const ours = byId(rendered);
    expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
    for (const [id, r] of ours) expect(r, id).toEqual(theirs.get(id));
  });
});

describe("the built-in kustomize renderer", () => {
  it("fails on a patch path that does not exist rather than ignoring it", () => {
    const doc = { spec: { http: [{ name: "a" }] } };
    expect(() => applyJsonPatch(doc, [{ op: "replace", path: "/spec/http/3/route", value: [] }], "t")).toThrow(
      /does not exist|out of range/,
    );
    applyJsonPatch(doc, [{ op: "add", path: "/spec/http/0/fault", value: { x: 1 } }], "t");
    expect(doc.spec.http[0]).toEqual({ name: "a", fault: { x: 1 } });
  });
});

if (!kubectl()) {
  console.warn("tests/mesh: kubectl not found; overlays were rendered by tests/mesh/lib/kustomize.ts only");
}
