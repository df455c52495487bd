/**
 * Configuration from environment variables, parsed once at start-up. A missing or malformed
 * value throws a ConfigError naming the variable; main.ts prints it and exits non-zero, so a
 * misconfigured process never starts serving.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
}

type Env = Record<string, string | undefined>;

export interface Field<T> {
  parse(name: string, raw: string | undefined): T;
}

function field<T>(parse: (name: string, raw: string) => T, fallback?: T): Field<T> {
  return {
    parse(name, raw) {
      if (raw === undefined || raw === "") {
        if (fallback === undefined) throw new ConfigError(`${name} is required but not set`);
        return fallback;
      }
      return parse(name, raw);
    },
  };
}

/** The field kinds a service can declare. `fallback` is the default when the variable is unset. */
export const env = {
  string: (fallback?: string) => field((_, raw) => raw, fallback),
  int: (opts: { fallback?: number; min?: number; max?: number } = {}) =>
    field((name, raw) => {
      const n = Number(raw);
      if (!Number.isInteger(n)) throw new ConfigError(`${name} must be an integer, got "${raw}"`);
      if (opts.min !== undefined && n < opts.min) throw new ConfigError(`${name} must be >= ${opts.min}, got ${n}`);
      if (opts.max !== undefined && n > opts.max) throw new ConfigError(`${name} must be <= ${opts.max}, got ${n}`);
      return n;
    }, opts.fallback),
  port: (fallback?: number) =>
    field((name, raw) => {
      const n = Number(raw);
      if (!Number.isInteger(n) || n < 0 || n > 65535)
        throw new ConfigError(`${name} must be a TCP port (0-65535), got "${raw}"`);
      return n;
    }, fallback),
  /**
   * A gRPC address: host:port ("127.0.0.1:50051", "tasks:50051"), or a grpc-js target listing
   * several endpoints of one service for round_robin ("ipv4:127.0.0.1:50052,127.0.0.1:50152";
   * `npm start -- --replicas tasks=2` hands callers this form).
   */
  address: (fallback?: string) =>
    field((name, raw) => {
      const hostPort = /^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/;
      const list = raw.startsWith("ipv4:") || raw.startsWith("ipv6:") ? raw.slice(5).split(",") : [raw];
      if (!list.every((a) => hostPort.test(a)))
        throw new ConfigError(`${name} must be host:port or ipv4:host:port,host:port,..., got "${raw}"`);
      return raw;
    }, fallback),
  url: (fallback?: string) =>
    field((name, raw) => {
      try {
        const u = new URL(raw);
        if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
        return raw;
      } catch {
        throw new ConfigError(`${name} must be an http(s) URL, got "${raw}"`);
      }
    }, fallback),
  oneOf: <T extends string>(values: readonly T[], fallback?: T) =>
    field((name, raw) => {
      if (!values.includes(raw as T))
        throw new ConfigError(`${name} must be one of ${values.join(", ")}, got "${raw}"`);
      return raw as T;
    }, fallback),
  /**
   * A secret of at least `minLength` characters. With `fallback` "" an unset variable reads as ""
   * (the feature it keys stays off); a value that is set must still be long enough.
   */
  secret: (minLength: number, fallback?: string) =>
    field((name, raw) => {
      if (raw.length < minLength) throw new ConfigError(`${name} must be at least ${minLength} characters`);
      return raw;
    }, fallback),
  bool: (fallback?: boolean) =>
    field((name, raw) => {
      if (raw === "true" || raw === "1") return true;
      if (raw === "false" || raw === "0") return false;
      throw new ConfigError(`${name} must be true or false, got "${raw}"`);
    }, fallback),
};

type Spec = Record<string, Field<unknown>>;
export type ConfigOf<S extends Spec> = { [K in keyof S]: S[K] extends Field<infer T> ? T : never };

/**
 * Reads every variable in `spec` from `source` (default process.env). All problems are reported
 * together, so one start-up attempt shows everything that needs fixing.
 */
export function loadConfig<S extends Spec>(spec: S, source: Env = process.env): ConfigOf<S> {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, f] of Object.entries(spec)) {
    try {
      out[name] = f.parse(name, source[name]);
    } catch (e) {
      problems.push(e instanceof Error ? e.message : String(e));
    }
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
  return out as ConfigOf<S>;
}
