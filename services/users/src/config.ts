import { join } from "node:path";
import { ConfigError, env, loadConfig, TOPOLOGY } from "@taskmesh/platform";

const spec = {
  /** gRPC port (UserService, UserInternalService, health, reflection). */
  GRPC_PORT: env.port(TOPOLOGY.users.grpcPort),
  /** Plain-HTTP port of the JWKS document and /healthz. */
  JWKS_PORT: env.port(TOPOLOGY.users.httpPort),
  HOST: env.string("127.0.0.1"),
  TASKMESH_DATA_DIR: env.string(".data"),
  /** Default: $TASKMESH_DATA_DIR/users.db */
  DB_PATH: env.string(""),
  /** Signing key file (JWKs, mode 0600). Default: $TASKMESH_DATA_DIR/users-signing-key.json */
  KEY_PATH: env.string(""),
  /** Lifetime of a user access token: 1 minute to 1 day, default 1 hour. */
  TOKEN_TTL_SECONDS: env.int({ fallback: 3600, min: 60, max: 86_400 }),
  /** Shared secret of internal service tokens, at least 32 characters. */
  TASKMESH_SERVICE_SECRET: {
    parse(name: string, raw: string | undefined): string {
      const value = env.string().parse(name, raw);
      if (value.length < 32) throw new ConfigError(`${name} must be at least 32 characters`);
      return value;
    },
  },
  /** NATS server URL(s), comma-separated (`nats://` or `tls://`). Default nats://127.0.0.1:4222. */
  NATS_URL: {
    parse(name: string, raw: string | undefined): string[] {
      return natsServers(name, raw === undefined || raw === "" ? "nats://127.0.0.1:4222" : raw);
    },
  },
  TASKMESH_MESH: env.oneOf(["none", "istio"] as const, "none"),
  LOG_LEVEL: env.oneOf(["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const, "info"),
};

export interface UsersConfig {
  grpcPort: number;
  jwksPort: number;
  host: string;
  dataDir: string;
  dbPath: string;
  keyPath: string;
  tokenTtlSeconds: number;
  serviceSecret: string;
  /** NATS_URL split into its servers. */
  natsServers: string[];
  mesh: "none" | "istio";
  logLevel: string;
}

/** Reads and checks the users service's environment; a ConfigError names every bad variable. */
export function loadUsersConfig(source: Record<string, string | undefined> = process.env): UsersConfig {
  const c = loadConfig(spec, source);
  return {
    grpcPort: c.GRPC_PORT,
    jwksPort: c.JWKS_PORT,
    host: c.HOST,
    dataDir: c.TASKMESH_DATA_DIR,
    dbPath: c.DB_PATH || join(c.TASKMESH_DATA_DIR, "users.db"),
    keyPath: c.KEY_PATH || join(c.TASKMESH_DATA_DIR, "users-signing-key.json"),
    tokenTtlSeconds: c.TOKEN_TTL_SECONDS,
    serviceSecret: c.TASKMESH_SERVICE_SECRET,
    natsServers: c.NATS_URL,
    mesh: c.TASKMESH_MESH,
    logLevel: c.LOG_LEVEL,
  };
}

/** `nats://a:4222,nats://b:4222` → its URLs, each checked (nats.js would only fail later, in the background). */
function natsServers(name: string, raw: string): string[] {
  const urls = raw.split(",").map((s) => s.trim());
  for (const u of urls) {
    let ok = false;
    try {
      const url = new URL(u);
      ok = (url.protocol === "nats:" || url.protocol === "tls:") && url.hostname !== "";
    } catch {}
    if (!ok) throw new ConfigError(`${name} must be nats://host:port (comma-separated for several), got "${raw}"`);
  }
  return urls;
}
