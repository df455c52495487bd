/**
 * Optional components (canary, fault-injection) and the overlays (dev for Tilt, drill = dev with
 * both components, prod). Patches are JSON 6902 with positions computed from the same routes and
 * env the base was generated from, so they cannot point at the wrong entry.
 */
import type { DescService } from "@bufbuild/protobuf";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { Secret } from "kubernetes-models/v1/Secret";
import { stringify } from "yaml";
import { type Manifest, meta, natsConfig, serviceDeployment, serviceEnv } from "./base.js";
import { type HttpRoute, routesFor, servedMethods } from "./istio.js";
import {
  component,
  type JsonPatchOp,
  type Kustomization,
  kustomization,
  type PatchTarget,
  target,
} from "./kustomization.js";
import {
  CANARY,
  FAULT,
  fqdn,
  image,
  type MeshService,
  NATS,
  PROD_REGISTRY,
  PROD_REPLICAS,
  PROD_TAG,
  RESOURCES,
  ROUTES,
  SERVICE_SECRET,
  SERVICES,
  STORAGE,
} from "./policy.js";

export interface Rendered {
  kustomization: Kustomization;
  manifests: Map<string, Manifest[]>;
}

const patch = (t: PatchTarget, ops: JsonPatchOp[]) => ({
  target: t,
  patch: stringify(ops, { lineWidth: 0, aliasDuplicateObjects: false }),
});

function service(name: string): MeshService {
  const s = SERVICES.find((x) => x.name === name);
  if (!s) throw new Error(`${name} is not a built service in TOPOLOGY`);
  return s;
}

/** The routes of a service's in-mesh VirtualService, as the istio component renders them. */
function meshRoutes(services: Map<string, DescService>, s: MeshService): HttpRoute[] {
  return routesFor(servedMethods(services, s), fqdn(s.name), ROUTES.internal, s.httpPort);
}

/** tasks v2 beside v1, and a weight of its traffic shifted to subset v2. */
export function renderCanary(services: Map<string, DescService>): Rendered {
  const s = service(CANARY.target);
  const v2 = serviceDeployment(s, "v2");
  const pod = v2.spec?.template.spec;
  if (s.sqlite && pod) {
    // v2 opens the same SQLite file (WAL allows several processes on one host): it must run on
    // v1's node, where the ReadWriteOnce volume is attached. Its migrations must be expand-only.
    pod.affinity = {
      podAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: [
          { labelSelector: { matchLabels: { app: s.name, version: "v1" } }, topologyKey: "kubernetes.io/hostname" },
        ],
      },
    };
  }
  const host = fqdn(s.name);
  const split = [
    { destination: { host, subset: "v1" }, weight: 100 - CANARY.v2Weight },
    { destination: { host, subset: "v2" }, weight: CANARY.v2Weight },
  ];
  return {
    kustomization: component({
      resources: [`${s.name}-v2.yaml`],
      patches: [
        patch(target("DestinationRule", s.name), [
          { op: "add", path: "/spec/subsets/-", value: { name: "v2", labels: { version: "v2" } } },
        ]),
        patch(
          target("VirtualService", s.name),
          meshRoutes(services, s).map((_, i) => ({ op: "replace", path: `/spec/http/${i}/route`, value: split })),
        ),
      ],
    }),
    manifests: new Map([[`${s.name}-v2.yaml`, [v2]]]),
  };
}

/** Delay and abort a share of calls to one dependency, for drills of the callers' timeouts and degradation. */
export function renderFaultInjection(services: Map<string, DescService>): Rendered {
  const s = service(FAULT.target);
  const fault = {
    delay: { percentage: { value: FAULT.delay.percent }, fixedDelay: FAULT.delay.fixedDelay },
    abort: { percentage: { value: FAULT.abort.percent }, grpcStatus: FAULT.abort.grpcStatus },
  };
  return {
    kustomization: component({
      patches: [
        patch(
          target("VirtualService", s.name),
          meshRoutes(services, s).map((_, i) => ({ op: "add", path: `/spec/http/${i}/fault`, value: fault })),
        ),
      ],
    }),
    manifests: new Map(),
  };
}

const envIndex = (s: MeshService, name: string) => {
  const i = serviceEnv(s).findIndex((e) => e.name === name);
  if (i < 0) throw new Error(`${s.name} has no env ${name}`);
  return i;
};
const container0 = "/spec/template/spec/containers/0";

/** dev: what `tilt up` applies. Debug logs, a dev-only service secret, a writable root for live update. */
export function renderDev(): Rendered {
  const patches = SERVICES.map((s) =>
    patch(target("Deployment", s.name), [
      { op: "replace", path: `${container0}/env/${envIndex(s, "LOG_LEVEL")}/value`, value: "debug" },
      // Tilt's live_update writes synced sources into the container: dev only, prod keeps the root read-only.
      { op: "replace", path: `${container0}/securityContext/readOnlyRootFilesystem`, value: false },
    ]),
  );
  const secret = new Secret({
    metadata: meta(SERVICE_SECRET.name, { app: "taskmesh" }),
    type: "Opaque",
    // A published, dev-only value: prod creates its own Secret (mesh/README.md).
    stringData: { [SERVICE_SECRET.key]: "dev-only-taskmesh-service-secret-do-not-use-in-prod" },
  });
  return {
    kustomization: kustomization(["../../base", "dev-secret.yaml"], {
      components: ["../../components/istio"],
      patches,
    }),
    manifests: new Map([["dev-secret.yaml", [secret]]]),
  };
}

/** drill: dev with the canary and fault-injection components (`TASKMESH_OVERLAY=drill tilt up`). */
export function renderDrill(): Rendered {
  return {
    kustomization: kustomization(["../dev"], {
      components: ["../../components/canary", "../../components/fault-injection"],
    }),
    manifests: new Map(),
  };
}

/**
 * prod: stateless services scale out behind PodDisruptionBudgets; SQLite owners stay single
 * writers on bigger volumes (no PDB: on one replica it would only block node drains); a 3-node
 * NATS cluster whose streams the services create with 3 replicas (NATS_STREAM_REPLICAS).
 */
export function renderProd(): Rendered {
  const patches: Kustomization["patches"] = [];
  const pdbs: Manifest[] = [];
  for (const s of SERVICES) {
    const ops: JsonPatchOp[] = [{ op: "replace", path: `${container0}/resources`, value: RESOURCES.prod }];
    if (!s.sqlite) {
      ops.push({ op: "replace", path: "/spec/replicas", value: PROD_REPLICAS });
      pdbs.push(
        new PodDisruptionBudget({
          metadata: meta(s.name),
          spec: { maxUnavailable: 1, selector: { matchLabels: { app: s.name } } },
        }),
      );
    }
    if (s.nats) {
      ops.push({
        op: "add",
        path: `${container0}/env/-`,
        value: { name: "NATS_STREAM_REPLICAS", value: String(NATS.prodReplicas) },
      });
    }
    patches.push(patch(target("Deployment", s.name), ops));
    if (s.sqlite) {
      patches.push(
        patch(target("PersistentVolumeClaim", `${s.name}-data`), [
          { op: "replace", path: "/spec/resources/requests/storage", value: STORAGE.prod },
        ]),
      );
    }
  }
  patches.push(
    patch(target("StatefulSet", NATS.name), [
      { op: "replace", path: "/spec/replicas", value: NATS.prodReplicas },
      { op: "replace", path: "/spec/volumeClaimTemplates/0/spec/resources/requests/storage", value: STORAGE.prod },
      {
        op: "add",
        path: "/spec/template/spec/topologySpreadConstraints",
        value: [
          {
            maxSkew: 1,
            topologyKey: "kubernetes.io/hostname",
            whenUnsatisfiable: "ScheduleAnyway",
            labelSelector: { matchLabels: { app: NATS.name } },
          },
        ],
      },
    ]),
    patch(target("ConfigMap", "nats-config"), [
      { op: "replace", path: "/data/nats.conf", value: natsConfig(NATS.prodReplicas) },
    ]),
    patch(target("Telemetry", "tracing"), [
      { op: "replace", path: "/spec/tracing/0/randomSamplingPercentage", value: 10 },
    ]),
  );
  // A 3-node JetStream cluster keeps quorum with one node down, never two.
  pdbs.push(
    new PodDisruptionBudget({
      metadata: meta(NATS.name),
      spec: { maxUnavailable: 1, selector: { matchLabels: { app: NATS.name } } },
    }),
  );
  return {
    kustomization: kustomization(["../../base", "pdb.yaml"], {
      // autoscaling (gateway HPA) and observability (PrometheusRule, PodMonitor, dashboards) are hand-written.
      components: ["../../components/istio", "../../components/autoscaling", "../../components/observability"],
      patches,
      images: SERVICES.map((s) => ({ name: image(s.name), newName: `${PROD_REGISTRY}/${s.name}`, newTag: PROD_TAG })),
    }),
    manifests: new Map([["pdb.yaml", pdbs]]),
  };
}
