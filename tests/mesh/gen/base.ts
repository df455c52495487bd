/**
 * mesh/base: the namespace, per service a ServiceAccount, Service, Deployment (and a
 * PersistentVolumeClaim for SQLite owners), and NATS JetStream as a StatefulSet.
 */
import { type ServiceTopology, TOPOLOGY } from "@taskmesh/platform";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { IEnvVar } from "kubernetes-models/v1/EnvVar";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import type { IPodSpec } from "kubernetes-models/v1/PodSpec";
import type { IProbe } from "kubernetes-models/v1/Probe";
import type { ISecurityContext } from "kubernetes-models/v1/SecurityContext";
import { type IService, Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { WEB_DIST } from "./dockerfile.js";
import {
  APP_UID,
  DATA_DIR,
  fqdn,
  image,
  jwksUrl,
  METRICS,
  type MeshService,
  NAMESPACE,
  NATS,
  OTLP_ENDPOINT,
  RESOURCES,
  SERVICE_SECRET,
  SERVICES,
  SIDECAR_DRAIN,
  STORAGE,
  TERMINATION_GRACE_SECONDS,
} from "./policy.js";

export interface Manifest {
  toJSON(): unknown;
  validate(): void;
}

export const meta = (name: string, labels: Record<string, string> = { app: name }) => ({
  name,
  namespace: NAMESPACE,
  labels,
});

/** The container's env: the names every service reads (packages/platform config, STYLE.md). */
export function serviceEnv(s: MeshService): IEnvVar[] {
  const env: IEnvVar[] = [
    { name: "GRPC_PORT", value: String(s.grpcPort) },
    // Pods listen on every interface: the sidecar forwards to the pod IP, probes arrive from the kubelet.
    { name: "HOST", value: "0.0.0.0" },
  ];
  if (s.httpPort !== undefined) env.push({ name: "JWKS_PORT", value: String(s.httpPort) });
  // Telemetry (read by packages/platform/src/telemetry): metrics for the sidecar agent to scrape
  // (it connects over the pod's loopback, hence every interface like the gRPC port), spans to Jaeger.
  env.push(
    { name: "METRICS_PORT", value: String(s.metricsPort) },
    { name: "METRICS_HOST", value: "0.0.0.0" },
    { name: "OTEL_EXPORTER_OTLP_ENDPOINT", value: OTLP_ENDPOINT },
  );
  if (s.sqlite) {
    env.push({ name: "TASKMESH_DATA_DIR", value: DATA_DIR }, { name: "DB_PATH", value: `${DATA_DIR}/${s.name}.db` });
  }
  if (s.jwks) env.push({ name: "JWKS_URL", value: jwksUrl() });
  for (const callee of s.calls) {
    // A callee may be declared but not built yet: the caller still gets its address and, while
    // nothing answers there, degrades (the gateway's dashboard lists that part as missing).
    const port = (TOPOLOGY as Record<string, ServiceTopology>)[callee]?.grpcPort;
    if (port === undefined) throw new Error(`${s.name} calls ${callee}, which TOPOLOGY does not declare`);
    env.push({ name: `${callee.toUpperCase()}_ADDR`, value: `${fqdn(callee)}:${port}` });
  }
  if (s.nats) env.push({ name: "NATS_URL", value: NATS.url() });
  // Behind the ingress gateway (Envoy appends the client's address to x-forwarded-for; the
  // sidecar does not), the TCP peer is a proxy: the gateway's per-address limits on Register and
  // Login must key on that one trusted hop, or every anonymous caller would share one bucket.
  if (s.edge) env.push({ name: "TRUSTED_PROXY_HOPS", value: "1" });
  // The edge serves the web client the image holds (services/Dockerfile's web stage) at /.
  if (s.edge) env.push({ name: "WEB_ROOT", value: `/app/${WEB_DIST}` });
  env.push({ name: "TASKMESH_MESH", value: "istio" }, { name: "LOG_LEVEL", value: "info" });
  // The internal service-token secret, to every service but the edge: the gateway only forwards
  // its callers' user tokens and never signs or checks a service token, so the pod facing the
  // internet does not hold the secret that opens the internal methods.
  if (!s.edge)
    env.push({
      name: SERVICE_SECRET.key,
      valueFrom: { secretKeyRef: { name: SERVICE_SECRET.name, key: SERVICE_SECRET.key } },
    });
  return env;
}

export const lockedDown: ISecurityContext = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ["ALL"] },
};
const podSecurity: IPodSpec["securityContext"] = {
  runAsNonRoot: true,
  runAsUser: APP_UID,
  runAsGroup: APP_UID,
  fsGroup: APP_UID,
  seccompProfile: { type: "RuntimeDefault" },
};

/** grpc.health.v1 on the gRPC port: service "" is readiness (DB, NATS), "liveness" is the process. */
export function grpcProbes(port: number): Pick<IContainer, "startupProbe" | "livenessProbe" | "readinessProbe"> {
  const liveness: IProbe["grpc"] = { port, service: "liveness" };
  return {
    // Migrations run before listen: allow a minute before liveness takes over.
    startupProbe: { grpc: liveness, periodSeconds: 2, failureThreshold: 30 },
    livenessProbe: { grpc: liveness, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 },
    readinessProbe: { grpc: { port }, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 2 },
  };
}

/** The Deployment of version `version` (v1 is named after the service, others `<service>-<version>`). */
export function serviceDeployment(s: MeshService, version = "v1"): Deployment {
  const labels = { app: s.name, version };
  const name = version === "v1" ? s.name : `${s.name}-${version}`;
  const ports: IContainer["ports"] = [{ name: "grpc", containerPort: s.grpcPort, protocol: "TCP" }];
  if (s.httpPort !== undefined) ports.push({ name: "http-jwks", containerPort: s.httpPort, protocol: "TCP" });
  // Not on the Service: only the sidecar agent in the pod scrapes it (see METRICS in policy.ts).
  ports.push({ name: METRICS.containerPortName, containerPort: s.metricsPort, protocol: "TCP" });
  const volumes: IPodSpec["volumes"] = [{ name: "tmp", emptyDir: { sizeLimit: "64Mi" } }];
  const mounts: IContainer["volumeMounts"] = [{ name: "tmp", mountPath: "/tmp" }];
  if (s.sqlite) {
    volumes.unshift({ name: "data", persistentVolumeClaim: { claimName: `${s.name}-data` } });
    mounts.unshift({ name: "data", mountPath: DATA_DIR });
  }
  return new Deployment({
    metadata: meta(name, labels),
    spec: {
      replicas: 1,
      revisionHistoryLimit: 5,
      // A SQLite owner is a single writer on a ReadWriteOnce volume: stop the old pod before the new one opens the file.
      strategy: s.sqlite
        ? { type: "Recreate" }
        : { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      selector: { matchLabels: labels },
      template: {
        metadata: {
          labels,
          annotations: {
            "kubectl.kubernetes.io/default-container": s.name,
            // Start the app after its sidecar (its first NATS connect goes through it) and let the sidecar drain in-flight calls.
            "proxy.istio.io/config": JSON.stringify({
              holdApplicationUntilProxyStarts: true,
              terminationDrainDuration: SIDECAR_DRAIN,
            }),
            // Prometheus' kubernetes-pods job (Istio's addon) scrapes what these say; Istio's
            // metrics merging points them at the sidecar agent, which adds this endpoint's metrics.
            "prometheus.io/scrape": "true",
            "prometheus.io/port": String(s.metricsPort),
            "prometheus.io/path": METRICS.path,
          },
        },
        spec: {
          serviceAccountName: s.name,
          // The app never calls the Kubernetes API; Istio's sidecar uses its own projected token.
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
          securityContext: podSecurity,
          containers: [
            {
              name: s.name,
              image: image(s.name),
              imagePullPolicy: "IfNotPresent",
              ports,
              env: serviceEnv(s),
              ...grpcProbes(s.grpcPort),
              resources: RESOURCES.dev,
              securityContext: lockedDown,
              volumeMounts: mounts,
            },
          ],
          volumes,
        },
      },
    },
  });
}

function serviceResources(s: MeshService): Manifest[] {
  const ports: NonNullable<IService["spec"]>["ports"] = [
    { name: "grpc", port: s.grpcPort, targetPort: s.grpcPort, protocol: "TCP", appProtocol: "grpc" },
  ];
  if (s.httpPort !== undefined) {
    ports.push({ name: "http-jwks", port: s.httpPort, targetPort: s.httpPort, protocol: "TCP", appProtocol: "http" });
  }
  const out: Manifest[] = [
    new ServiceAccount({ metadata: meta(s.name), automountServiceAccountToken: false }),
    new Service({ metadata: meta(s.name), spec: { selector: { app: s.name }, ports } }),
  ];
  if (s.sqlite) {
    out.push(
      new PersistentVolumeClaim({
        metadata: meta(`${s.name}-data`, { app: s.name }),
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: STORAGE.dev } } },
      }),
    );
  }
  out.push(serviceDeployment(s));
  return out;
}

/** nats.conf for one server (base) or a cluster of `replicas` with JetStream replication (prod). */
export function natsConfig(replicas = 1): string {
  const lines = [
    "# JetStream with file storage; server_name comes from the pod name so it is stable per replica.",
    "server_name: $POD_NAME",
    "pid_file: /var/run/nats/nats.pid",
    `listen: 0.0.0.0:${NATS.clientPort}`,
    `http: 0.0.0.0:${NATS.monitorPort}`,
    `lame_duck_duration: ${NATS.lameDuck}`,
    "lame_duck_grace_period: 10s",
    "jetstream {",
    "  store_dir: /data",
    "  max_memory_store: 64MB",
    "  max_file_store: 8GB",
    // Prod: fsync every write before the PubAck (nats-server >= 2.10; the default fsyncs every
    // 2 minutes, so a power cut of every node could lose acknowledged messages). Costs
    // throughput, which one node's dev setup does not pay.
    ...(replicas > 1 ? ["  sync_interval: always"] : []),
    "}",
  ];
  if (replicas > 1) {
    const routes = Array.from(
      { length: replicas },
      (_, i) => `    nats://nats-${i}.nats-headless.${NAMESPACE}.svc.cluster.local:${NATS.clusterPort}`,
    );
    lines.push(
      "cluster {",
      "  name: taskmesh",
      `  listen: 0.0.0.0:${NATS.clusterPort}`,
      "  routes: [",
      ...routes,
      "  ]",
      "}",
    );
  }
  return lines.join("\n");
}

function natsResources(): Manifest[] {
  const labels = { app: NATS.name, version: NATS.version };
  const ports: NonNullable<IService["spec"]>["ports"] = [
    // Declared TCP: NATS speaks first (INFO), so Istio must not wait to sniff the protocol.
    { name: "tcp-client", port: NATS.clientPort, targetPort: NATS.clientPort, protocol: "TCP", appProtocol: "tcp" },
    { name: "tcp-cluster", port: NATS.clusterPort, targetPort: NATS.clusterPort, protocol: "TCP", appProtocol: "tcp" },
    {
      name: "http-monitor",
      port: NATS.monitorPort,
      targetPort: NATS.monitorPort,
      protocol: "TCP",
      appProtocol: "http",
    },
  ];
  const health = (query: string): IProbe["httpGet"] => ({ path: `/healthz${query}`, port: NATS.monitorPort });
  return [
    new ServiceAccount({ metadata: meta(NATS.name), automountServiceAccountToken: false }),
    new ConfigMap({ metadata: meta("nats-config", { app: NATS.name }), data: { "nats.conf": natsConfig() } }),
    new Service({ metadata: meta(NATS.name), spec: { selector: { app: NATS.name }, ports } }),
    // Stable per-pod DNS names (nats-0.nats-headless...) for cluster routes; published before ready so peers can meet.
    new Service({
      metadata: meta("nats-headless", { app: NATS.name }),
      spec: { clusterIP: "None", publishNotReadyAddresses: true, selector: { app: NATS.name }, ports },
    }),
    new StatefulSet({
      metadata: meta(NATS.name, labels),
      spec: {
        serviceName: "nats-headless",
        replicas: 1,
        podManagementPolicy: "Parallel",
        selector: { matchLabels: { app: NATS.name } },
        template: {
          metadata: {
            labels,
            annotations: {
              "kubectl.kubernetes.io/default-container": NATS.name,
              "proxy.istio.io/config": JSON.stringify({ holdApplicationUntilProxyStarts: true }),
            },
          },
          spec: {
            serviceAccountName: NATS.name,
            automountServiceAccountToken: false,
            // Longer than lame_duck_duration, so clients move before the server exits.
            terminationGracePeriodSeconds: 60,
            securityContext: podSecurity,
            containers: [
              {
                name: NATS.name,
                image: NATS.image,
                imagePullPolicy: "IfNotPresent",
                command: ["nats-server", "--config", "/etc/nats/nats.conf"],
                ports: [
                  { name: "client", containerPort: NATS.clientPort },
                  { name: "cluster", containerPort: NATS.clusterPort },
                  { name: "monitor", containerPort: NATS.monitorPort },
                ],
                env: [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }],
                startupProbe: { httpGet: health(""), periodSeconds: 5, failureThreshold: 60 },
                livenessProbe: { httpGet: health("?js-enabled-only=true"), periodSeconds: 30, timeoutSeconds: 5 },
                readinessProbe: { httpGet: health("?js-server-only=true"), periodSeconds: 10, timeoutSeconds: 5 },
                // Lame-duck mode before the stop: clients reconnect to a peer, and JetStream hands off leadership.
                lifecycle: {
                  preStop: { exec: { command: ["nats-server", "--signal", "ldm=/var/run/nats/nats.pid"] } },
                },
                resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "512Mi" } },
                securityContext: lockedDown,
                volumeMounts: [
                  { name: "config", mountPath: "/etc/nats" },
                  { name: "data", mountPath: "/data" },
                  { name: "run", mountPath: "/var/run/nats" },
                ],
              },
            ],
            volumes: [
              { name: "config", configMap: { name: "nats-config" } },
              { name: "run", emptyDir: {} },
            ],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: "data" },
            spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: STORAGE.dev } } },
          },
        ],
      },
    }),
  ];
}

export function renderBase(): Map<string, Manifest[]> {
  const files = new Map<string, Manifest[]>();
  files.set("namespace.yaml", [
    new Namespace({ metadata: { name: NAMESPACE, labels: { "istio-injection": "enabled" } } }),
  ]);
  files.set("nats.yaml", natsResources());
  for (const s of SERVICES) files.set(`${s.name}.yaml`, serviceResources(s));
  return files;
}
