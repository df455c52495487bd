/**
 * The one declaration of taskmesh's services: their ports and who calls whom. The local runner
 * (`npm start`) and the mesh manifests are derived from it (and tests check the manifests
 * against it), so a new caller is added here first.
 */
export interface ServiceTopology {
  /** gRPC port (the gateway's public port for the edge). */
  grpcPort: number;
  /** Extra HTTP port (users' JWKS), if any. */
  httpPort?: number;
  /** Services this one calls over gRPC (and users' JWKS over HTTP where `jwks` is true). */
  calls: readonly string[];
  /** Fetches the users JWKS to verify tokens itself. */
  jwks: boolean;
  /** Built and started by `npm start` (services of later issues are declared but not yet built). */
  built: boolean;
}

export const TOPOLOGY = {
  users: { grpcPort: 50051, httpPort: 50061, calls: [], jwks: false, built: true },
  tasks: { grpcPort: 50052, calls: [], jwks: true, built: true },
  gateway: { grpcPort: 8080, calls: ["users", "tasks"], jwks: true, built: true },
} as const satisfies Record<string, ServiceTopology>;

export type ServiceName = keyof typeof TOPOLOGY;

/** Path of the users JWKS document (served over HTTP by users; Istio's RequestAuthentication reads it too). */
export const JWKS_PATH = "/.well-known/jwks.json";
