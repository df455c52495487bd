/**
 * mesh/components/istio: mTLS, per-service traffic policy and routes, authorization that mirrors
 * the call graph in TOPOLOGY, the edge (ingress Gateway, JWT), and tracing.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { DestinationRule } from "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule";
import { Gateway } from "@kubernetes-models/istio/networking.istio.io/v1/Gateway";
import { type IVirtualService, VirtualService } from "@kubernetes-models/istio/networking.istio.io/v1/VirtualService";
import {
  AuthorizationPolicy,
  type IAuthorizationPolicy,
} from "@kubernetes-models/istio/security.istio.io/v1/AuthorizationPolicy";
import { PeerAuthentication } from "@kubernetes-models/istio/security.istio.io/v1/PeerAuthentication";
import { RequestAuthentication } from "@kubernetes-models/istio/security.istio.io/v1/RequestAuthentication";
import { Telemetry } from "@kubernetes-models/istio/telemetry.istio.io/v1/Telemetry";
import { JWKS_PATH, USER_TOKEN_AUDIENCE, USER_TOKEN_ISSUER } from "@taskmesh/platform";
import { type Manifest, meta } from "./base.js";
import { isIdempotent, methodPath, resolveMethods } from "./descriptors.js";
import {
  ANONYMOUS_METHODS,
  CONNECTION_POOL,
  EDGE_OPEN_METHODS,
  fqdn,
  INGRESS,
  jwksUrl,
  type MeshService,
  NAMESPACE,
  NATS,
  OUTLIER_DETECTION,
  principal,
  RETRY_ON,
  ROUTES,
  SERVICES,
  TRACING_PROVIDER,
  USER_HASH_HEADER,
} from "./policy.js";

export type HttpRoute = NonNullable<NonNullable<IVirtualService["spec"]>["http"]>[number];
type Rule = NonNullable<NonNullable<IAuthorizationPolicy["spec"]>["rules"]>[number];
type Budget = (typeof ROUTES)[keyof typeof ROUTES];

export const EDGE_GATEWAY = "taskmesh-gateway";

/** The methods a service serves, from its `serves` list in TOPOLOGY. */
export function servedMethods(services: Map<string, DescService>, s: MeshService): DescMethod[] {
  if (!s.serves) throw new Error(`TOPOLOGY.${s.name} has no "serves": the mesh cannot route or authorize it`);
  return s.serves.flatMap((ref) => resolveMethods(services, ref));
}

const exact = (paths: string[]) => paths.sort().map((p) => ({ uri: { exact: p } }));

/**
 * Routes for one host: idempotent unary methods with retries, streams without a route timeout
 * (a server stream lives as long as its subscriber), everything else with retries off. Istio
 * retries by default (2 attempts) when a route does not say, so the default route says 0.
 */
export function routesFor(methods: DescMethod[], host: string, budget: Budget, httpPort?: number): HttpRoute[] {
  const route = [{ destination: { host } }];
  const idempotent = methods.filter((m) => m.methodKind === "unary" && isIdempotent(m)).map(methodPath);
  const streaming = methods.filter((m) => m.methodKind !== "unary").map(methodPath);
  const retries =
    budget.attempts > 0
      ? { attempts: budget.attempts, perTryTimeout: budget.perTryTimeout, retryOn: RETRY_ON }
      : { attempts: 0 };
  const routes: HttpRoute[] = [];
  if (httpPort !== undefined) {
    routes.push({
      name: "jwks",
      match: [{ port: httpPort, method: { exact: "GET" }, uri: { exact: JWKS_PATH } }],
      route,
      timeout: budget.timeout,
      retries,
    });
  }
  if (idempotent.length > 0) {
    routes.push({ name: "idempotent", match: exact(idempotent), route, timeout: budget.timeout, retries });
  }
  if (streaming.length > 0) {
    routes.push({ name: "streaming", match: exact(streaming), route, timeout: "0s", retries: { attempts: 0 } });
  }
  routes.push({ name: "default", route, timeout: budget.timeout, retries: { attempts: 0 } });
  return routes;
}

export function serviceVirtualService(services: Map<string, DescService>, s: MeshService): VirtualService {
  return new VirtualService({
    metadata: meta(s.name),
    spec: {
      hosts: [fqdn(s.name)],
      http: routesFor(servedMethods(services, s), fqdn(s.name), ROUTES.internal, s.httpPort),
    },
  });
}

function destinationRule(name: string, host: string, subsets: boolean, edge = false): DestinationRule {
  return new DestinationRule({
    metadata: meta(name),
    spec: {
      host,
      trafficPolicy: {
        tls: { mode: "ISTIO_MUTUAL" },
        // The edge keeps per-user token buckets in memory: one user, one replica (USER_HASH_HEADER).
        // When a replica dies only its users move (consistent hashing), to fresh buckets on another.
        loadBalancer: edge ? { consistentHash: { httpHeaderName: USER_HASH_HEADER } } : { simple: "LEAST_REQUEST" },
        connectionPool: CONNECTION_POOL,
        outlierDetection: OUTLIER_DETECTION,
      },
      ...(subsets ? { subsets: [{ name: "v1", labels: { version: "v1" } }] } : {}),
    },
  });
}

/** Who calls `callee`, and on which method paths, per TOPOLOGY's `calls` and `uses`. */
export function callersOf(
  services: Map<string, DescService>,
  callee: MeshService,
): { caller: string; paths: string[] }[] {
  return SERVICES.filter((c) => c.calls.includes(callee.name)).map((c) => {
    const refs = c.uses?.[callee.name];
    if (!refs) throw new Error(`TOPOLOGY.${c.name} calls ${callee.name} but "uses" does not say what it calls`);
    const paths = [...new Set(refs.flatMap((ref) => resolveMethods(services, ref)).map(methodPath))].sort();
    return { caller: c.name, paths };
  });
}

function edgeRules(services: Map<string, DescService>, s: MeshService): Rule[] {
  const served = servedMethods(services, s).map(methodPath);
  const open = [...served.filter((p) => ANONYMOUS_METHODS.includes(p)), ...EDGE_OPEN_METHODS].sort();
  const authenticated = served.filter((p) => !ANONYMOUS_METHODS.includes(p)).sort();
  const ports = [String(s.grpcPort)];
  return [
    // Every public method but Register/Login/RefreshSession needs a user token Istio verified (RequestAuthentication).
    {
      from: [{ source: { principals: [INGRESS.principal], requestPrincipals: [`${USER_TOKEN_ISSUER}/*`] } }],
      to: [{ operation: { ports, paths: authenticated } }],
    },
    { from: [{ source: { principals: [INGRESS.principal] } }], to: [{ operation: { ports, paths: open } }] },
    // The web client's static files and the calendar feed (GET /calendar/<secret>.ics, the secret is its
    // credential): GET only, and never an RPC path (Connect can GET a side-effect-free method).
    {
      from: [{ source: { principals: [INGRESS.principal] } }],
      to: [{ operation: { ports, methods: ["GET", "HEAD"], notPaths: ["/taskmesh.*", "/grpc.*"] } }],
    },
  ];
}

export function serviceAuthorizationPolicy(services: Map<string, DescService>, s: MeshService): AuthorizationPolicy {
  const rules: Rule[] = callersOf(services, s).map(({ caller, paths }) => ({
    from: [{ source: { principals: [principal(caller)] } }],
    to: [{ operation: { ports: [String(s.grpcPort)], paths } }],
  }));
  if (s.httpPort !== undefined) {
    // The JWKS is public key material, and istiod fetches it for RequestAuthentication from outside
    // the mesh (no workload identity, plain text): open to anyone, for this one GET only.
    rules.push({ to: [{ operation: { ports: [String(s.httpPort)], methods: ["GET"], paths: [JWKS_PATH] } }] });
  }
  if (s.edge) rules.push(...edgeRules(services, s));
  return new AuthorizationPolicy({
    metadata: meta(s.name),
    // ALLOW with these rules; with none, nothing reaches the service (deny-all covers the namespace anyway).
    spec: { selector: { matchLabels: { app: s.name } }, action: "ALLOW", rules },
  });
}

function natsResources(): Manifest[] {
  const clients = SERVICES.filter((s) => s.nats).map((s) => principal(s.name));
  const rules: Rule[] = [
    {
      from: [{ source: { principals: [principal(NATS.name)] } }],
      to: [{ operation: { ports: [String(NATS.clusterPort)] } }],
    },
  ];
  if (clients.length > 0) {
    rules.unshift({
      from: [{ source: { principals: clients } }],
      to: [{ operation: { ports: [String(NATS.clientPort)] } }],
    });
  }
  return [
    destinationRule(NATS.name, fqdn(NATS.name), false),
    new AuthorizationPolicy({
      metadata: meta(NATS.name),
      spec: { selector: { matchLabels: { app: NATS.name } }, action: "ALLOW", rules },
    }),
  ];
}

function edgeResources(services: Map<string, DescService>): Manifest[] {
  const edge = SERVICES.filter((s) => s.edge);
  if (edge.length !== 1) throw new Error(`exactly one service must have edge: true in TOPOLOGY (found ${edge.length})`);
  const s = edge[0] as MeshService;
  return [
    new Gateway({
      metadata: meta(EDGE_GATEWAY),
      spec: {
        selector: INGRESS.selector,
        // HTTP: Envoy accepts HTTP/1.1 (Connect, gRPC-Web from browsers) and h2c (grpcurl) on one port.
        servers: [{ port: { number: INGRESS.port, name: "http", protocol: "HTTP" }, hosts: ["*"] }],
      },
    }),
    new VirtualService({
      metadata: meta("edge"),
      spec: {
        hosts: ["*"],
        gateways: [EDGE_GATEWAY],
        http: routesFor(servedMethods(services, s), fqdn(s.name), ROUTES.edge),
      },
    }),
    new RequestAuthentication({
      metadata: meta(`${s.name}-jwt`),
      spec: {
        selector: { matchLabels: { app: s.name } },
        jwtRules: [
          {
            issuer: USER_TOKEN_ISSUER,
            audiences: [USER_TOKEN_AUDIENCE],
            jwksUri: jwksUrl(),
            // The gateway forwards the caller's token to users and tasks: Istio must not strip it.
            forwardOriginalToken: true,
          },
        ],
      },
    }),
    // At the ingress, where the gateway replica is chosen: the verified subject becomes the hash
    // header (a request with an invalid token is refused here; Register/Login carry none and are
    // spread, their per-address limits stay per replica). It lives with the ingress, in istio-system.
    new RequestAuthentication({
      metadata: { name: "taskmesh-ingress-jwt", namespace: INGRESS.namespace, labels: { app: s.name } },
      spec: {
        selector: { matchLabels: INGRESS.selector },
        jwtRules: [
          {
            issuer: USER_TOKEN_ISSUER,
            audiences: [USER_TOKEN_AUDIENCE],
            jwksUri: jwksUrl(),
            forwardOriginalToken: true,
            outputClaimToHeaders: [{ header: USER_HASH_HEADER, claim: "sub" }],
          },
        ],
      },
    }),
  ];
}

export function renderIstio(services: Map<string, DescService>): Map<string, Manifest[]> {
  const files = new Map<string, Manifest[]>();
  const jwksPorts = SERVICES.filter((s) => s.httpPort !== undefined);
  files.set("peer-authentication.yaml", [
    new PeerAuthentication({ metadata: meta("default"), spec: { mtls: { mode: "STRICT" } } }),
    // istiod fetches the JWKS for RequestAuthentication without a sidecar: that one port accepts plain text.
    ...jwksPorts.map(
      (s) =>
        new PeerAuthentication({
          metadata: meta(`${s.name}-jwks`),
          spec: {
            selector: { matchLabels: { app: s.name } },
            mtls: { mode: "STRICT" },
            portLevelMtls: { [String(s.httpPort)]: { mode: "PERMISSIVE" } },
          },
        }),
    ),
  ]);
  // An ALLOW policy with no rules matches nothing: every workload in the namespace denies by default.
  files.set("deny-all.yaml", [new AuthorizationPolicy({ metadata: meta("deny-all"), spec: {} })]);
  files.set("nats.yaml", natsResources());
  for (const s of SERVICES) {
    files.set(`${s.name}.yaml`, [
      destinationRule(s.name, fqdn(s.name), true, s.edge === true),
      serviceVirtualService(services, s),
      serviceAuthorizationPolicy(services, s),
    ]);
  }
  files.set("edge.yaml", edgeResources(services));
  files.set("telemetry.yaml", [
    new Telemetry({
      metadata: { name: "tracing", namespace: NAMESPACE },
      spec: { tracing: [{ providers: [{ name: TRACING_PROVIDER }], randomSamplingPercentage: 100 }] },
    }),
  ]);
  return files;
}
