/**
 * Renders every generated mesh file (path relative to the repo root → content). The drift test
 * compares them with the committed files; `npm run mesh:gen` writes them.
 */
import { stringify } from "yaml";
import { type Manifest, renderBase } from "./base.js";
import { type Rendered, renderCanary, renderDev, renderDrill, renderFaultInjection, renderProd } from "./components.js";
import { loadServices } from "./descriptors.js";
import { contextPaths, DOCKERFILE, imageWorkspaces, renderDockerfile } from "./dockerfile.js";
import { renderIstio } from "./istio.js";
import { component, type Kustomization, kustomization } from "./kustomization.js";
import { GENERATED_HEADER, NATS, SERVICES } from "./policy.js";

/** Directories whose *.yaml the generator owns entirely (a file it no longer renders is stale). */
export const GENERATED_DIRS = [
  "mesh/base",
  "mesh/components/istio",
  "mesh/components/canary",
  "mesh/components/fault-injection",
  "mesh/overlays/dev",
  "mesh/overlays/drill",
  "mesh/overlays/prod",
];
export const TOPOLOGY_JSON = "mesh/topology.json";

/** No anchors/aliases (kustomize and humans read these), no folding of long lines. */
export const yamlOptions = { lineWidth: 0, aliasDuplicateObjects: false } as const;

export function manifestsYaml(manifests: Manifest[]): string {
  const docs = manifests.map((m) => {
    m.validate();
    return stringify(m.toJSON(), yamlOptions);
  });
  return `# ${GENERATED_HEADER}\n${docs.join("---\n")}`;
}

const kustomizationYaml = (k: Kustomization) => `# ${GENERATED_HEADER}\n${stringify(k, yamlOptions)}`;

export async function renderMesh(): Promise<Map<string, string>> {
  const services = await loadServices();
  const files = new Map<string, string>();
  const put = (dir: string, manifests: Map<string, Manifest[]>, k: Kustomization) => {
    for (const [name, docs] of manifests) files.set(`${dir}/${name}`, manifestsYaml(docs));
    files.set(`${dir}/kustomization.yaml`, kustomizationYaml(k));
  };
  const putRendered = (dir: string, r: Rendered) => put(dir, r.manifests, r.kustomization);

  const base = renderBase();
  put("mesh/base", base, kustomization([...base.keys()]));
  const istio = renderIstio(services);
  put("mesh/components/istio", istio, component({ resources: [...istio.keys()] }));
  putRendered("mesh/components/canary", renderCanary(services));
  putRendered("mesh/components/fault-injection", renderFaultInjection(services));
  putRendered("mesh/overlays/dev", renderDev());
  putRendered("mesh/overlays/drill", renderDrill());
  putRendered("mesh/overlays/prod", renderProd());

  // What the Tiltfile reads: one image and one k8s resource per service.
  const dockerfile = renderDockerfile(GENERATED_HEADER);
  files.set(DOCKERFILE, dockerfile);
  const tilt = {
    comment: GENERATED_HEADER,
    nats: NATS.name,
    services: SERVICES.map((s) => ({
      name: s.name,
      grpcPort: s.grpcPort,
      ...(s.httpPort !== undefined ? { httpPort: s.httpPort } : {}),
      edge: s.edge === true,
      // Start-up order is what a service needs to start, not whom it calls: a callee that is not
      // up yet is a failed call the caller retries or degrades on (and calls run both ways, e.g.
      // users ↔ notifications), while a service that connects to NATS waits for it at start-up.
      startAfter: s.nats ? [NATS.name] : [],
      dockerfile: DOCKERFILE,
      buildArgs: { SERVICE: s.name },
      // Every path the Dockerfile copies from the context: Tilt's docker_build `only`.
      context: contextPaths(dockerfile, s.name),
      // The workspaces its image holds: Tilt live-syncs their src/.
      workspaces: imageWorkspaces(s.name).map((w) => w.dir),
    })),
  };
  files.set(TOPOLOGY_JSON, `${JSON.stringify(tilt, null, 2)}\n`);
  return files;
}
