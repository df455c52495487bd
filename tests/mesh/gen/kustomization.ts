/** The subset of kustomize's Kustomization/Component that taskmesh uses (and tests/mesh/lib/kustomize.ts renders). */

export interface PatchTarget {
  group?: string;
  version?: string;
  kind: string;
  name: string;
}

/** One RFC 6902 operation. */
export interface JsonPatchOp {
  op: "add" | "replace" | "remove";
  path: string;
  value?: unknown;
}

export interface Kustomization {
  apiVersion: "kustomize.config.k8s.io/v1beta1" | "kustomize.config.k8s.io/v1alpha1";
  kind: "Kustomization" | "Component";
  resources?: string[];
  components?: string[];
  /** JSON 6902 patches only: explicit about positions, no merge-key rules to guess. */
  patches?: { target: PatchTarget; patch: string }[];
  images?: { name: string; newName?: string; newTag?: string }[];
}

export const KUSTOMIZATION_KEYS = new Set(["apiVersion", "kind", "resources", "components", "patches", "images"]);

export function kustomization(
  resources: string[],
  extra: Omit<Kustomization, "apiVersion" | "kind"> = {},
): Kustomization {
  return { apiVersion: "kustomize.config.k8s.io/v1beta1", kind: "Kustomization", resources, ...extra };
}

export function component(extra: Omit<Kustomization, "apiVersion" | "kind">): Kustomization {
  return { apiVersion: "kustomize.config.k8s.io/v1alpha1", kind: "Component", ...extra };
}

export const ISTIO_GROUPS = {
  VirtualService: { group: "networking.istio.io", version: "v1" },
  DestinationRule: { group: "networking.istio.io", version: "v1" },
  Telemetry: { group: "telemetry.istio.io", version: "v1" },
} as const;

export function target(kind: string, name: string): PatchTarget {
  const core: Record<string, { group?: string; version: string }> = {
    Deployment: { group: "apps", version: "v1" },
    StatefulSet: { group: "apps", version: "v1" },
    ConfigMap: { version: "v1" },
    PersistentVolumeClaim: { version: "v1" },
    ...ISTIO_GROUPS,
  };
  const gv = core[kind];
  if (!gv) throw new Error(`no group/version known for ${kind}`);
  return { ...(gv.group ? { group: gv.group } : {}), version: gv.version, kind, name };
}
