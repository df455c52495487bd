import { describe, expect, it } from "vitest";
import { ConfigError, env, loadConfig } from "./config.js";

const spec = {
  GRPC_PORT: env.port(50051),
  DB_PATH: env.string(),
  TASKMESH_MESH: env.oneOf(["none", "istio"] as const, "none"),
  JWKS_URL: env.url("http://127.0.0.1:50061/.well-known/jwks.json"),
  TOKEN_TTL_SECONDS: env.int({ fallback: 3600, min: 60, max: 86400 }),
};

describe("loadConfig", () => {
  it("applies defaults and parses values", () => {
    const c = loadConfig(spec, { DB_PATH: "/tmp/x.db", GRPC_PORT: "0" });
    expect(c).toEqual({
      GRPC_PORT: 0,
      DB_PATH: "/tmp/x.db",
      TASKMESH_MESH: "none",
      JWKS_URL: "http://127.0.0.1:50061/.well-known/jwks.json",
      TOKEN_TTL_SECONDS: 3600,
    });
  });

  it("names a missing required variable", () => {
    expect(() => loadConfig(spec, {})).toThrow(/DB_PATH is required/);
  });

  it("names every malformed variable at once", () => {
    let err: unknown;
    try {
      loadConfig(spec, {
        DB_PATH: "x",
        GRPC_PORT: "70000",
        TASKMESH_MESH: "linkerd",
        JWKS_URL: "ftp://x",
        TOKEN_TTL_SECONDS: "5",
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toContain("GRPC_PORT must be a TCP port");
    expect(msg).toContain("TASKMESH_MESH must be one of none, istio");
    expect(msg).toContain("JWKS_URL must be an http(s) URL");
    expect(msg).toContain("TOKEN_TTL_SECONDS must be >= 60");
  });

  it("takes a host:port or a grpc-js list of replicas as an address, and refuses anything else", () => {
    const addr = { TASKS_ADDR: env.address("127.0.0.1:50052") };
    for (const ok of ["tasks:50052", "127.0.0.1:1", "ipv4:127.0.0.1:50052,127.0.0.1:40001", "ipv6:[::1]:50052"])
      expect(loadConfig(addr, { TASKS_ADDR: ok }).TASKS_ADDR).toBe(ok);
    for (const bad of ["tasks", "127.0.0.1:1,127.0.0.1:2", "ipv4:127.0.0.1:1,", "http://tasks:50052", "ipv4:"])
      expect(() => loadConfig(addr, { TASKS_ADDR: bad }), bad).toThrow(/TASKS_ADDR must be host:port/);
  });
});
