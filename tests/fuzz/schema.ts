// Which methods to fuzz, found at run time: the gateway's server reflection says which services
// are public (so a service mounted tomorrow is fuzzed without a change here), and the generated
// descriptors in @taskmesh/gen give their messages and buf.validate rules.
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { type DescField, type DescMethod, type DescService, getOption } from "@bufbuild/protobuf";
import { field as validateField } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ServerReflection } from "@taskmesh/gen/grpc/reflection/v1/reflection_pb";
import { REPO_ROOT } from "@taskmesh/runner";

/** Every service the edge lists in reflection except the grpc.* infrastructure ones. */
export async function listPublicServices(gatewayUrl: string): Promise<string[]> {
  const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: gatewayUrl }));
  async function* requests() {
    yield { messageRequest: { case: "listServices" as const, value: "" } };
  }
  const names: string[] = [];
  for await (const res of client.serverReflectionInfo(requests(), { timeoutMs: 10_000 })) {
    if (res.messageResponse.case === "listServicesResponse") {
      for (const s of res.messageResponse.value.service) names.push(s.name);
    }
  }
  return names.filter((n) => !n.startsWith("grpc.")).sort();
}

/** Every service descriptor in @taskmesh/gen, by full name (imports each generated module). */
export async function generatedServices(): Promise<Map<string, DescService>> {
  const root = join(REPO_ROOT, "packages/gen/src");
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith("_pb.ts")) files.push(relative(root, p).replace(/\.ts$/, ""));
    }
  };
  walk(join(root, "taskmesh"));
  const out = new Map<string, DescService>();
  for (const f of files) {
    const mod = (await import(`@taskmesh/gen/${f}`)) as Record<string, unknown>;
    for (const v of Object.values(mod)) {
      const d = v as DescService;
      if (d && typeof d === "object" && d.kind === "service") out.set(d.typeName, d);
    }
  }
  return out;
}

export interface FuzzTargets {
  services: DescService[];
  methods: DescMethod[];
  /** Listed by reflection but without a generated descriptor (cannot be fuzzed field by field). */
  unknown: string[];
}

/** The public services of the running edge, with their descriptors. */
export async function fuzzTargets(gatewayUrl: string): Promise<FuzzTargets> {
  const listed = await listPublicServices(gatewayUrl);
  const generated = await generatedServices();
  const services = listed.map((n) => generated.get(n)).filter((s): s is DescService => s !== undefined);
  return {
    services,
    methods: services.flatMap((s) => s.methods),
    unknown: listed.filter((n) => !generated.has(n)),
  };
}

/** The buf.validate rules of a field that shape boundary values; every member optional. */
export interface Rules {
  minLen?: number;
  maxLen?: number;
  uuid?: boolean;
  email?: boolean;
  min?: number;
  max?: number;
  minItems?: number;
  maxItems?: number;
  definedOnly?: boolean;
  required?: boolean;
  items?: Rules;
}

/** The rules of `field` (or of its items, for `items` rules on a repeated field). */
export function rulesOf(field: DescField): Rules {
  return flatten(getOption(field, validateField) as unknown as RulesMessage | undefined);
}

interface RulesMessage {
  required?: boolean;
  type?: { case?: string; value?: Record<string, unknown> };
}

function flatten(r: RulesMessage | undefined): Rules {
  const out: Rules = {};
  if (!r) return out;
  if (r.required) out.required = true;
  const c = r.type?.case;
  const v = r.type?.value ?? {};
  const num = (x: unknown) => (typeof x === "bigint" || typeof x === "number" ? Number(x) : undefined);
  if (c === "string") {
    out.minLen = num(v.minLen);
    out.maxLen = num(v.maxLen);
    const wk = (v.wellKnown as { case?: string } | undefined)?.case;
    out.uuid = wk === "uuid";
    out.email = wk === "email";
  } else if (c === "repeated") {
    out.minItems = num(v.minItems);
    out.maxItems = num(v.maxItems);
    out.items = flatten(v.items as RulesMessage | undefined);
  } else if (c === "enum") {
    out.definedOnly = v.definedOnly === true;
  } else if (c && /int|fixed|float|double/.test(c)) {
    const lo = v.greaterThan as { case?: string; value?: unknown } | undefined;
    const hi = v.lessThan as { case?: string; value?: unknown } | undefined;
    out.min = num(lo?.value);
    out.max = num(hi?.value);
  }
  return out;
}
