/**
 * The Protobuf services of taskmesh, read from the generated descriptors in @taskmesh/gen, so the
 * mesh's method paths and retry decisions come from the contracts and cannot drift from them.
 */
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { REPO_ROOT } from "./paths.js";

const GEN_SRC = join(REPO_ROOT, "packages/gen/src");

function pbFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? pbFiles(join(dir, e.name)) : e.name.endsWith("_pb.ts") ? [join(dir, e.name)] : [],
  );
}

function isService(value: unknown): value is DescService {
  return typeof value === "object" && value !== null && (value as { kind?: unknown }).kind === "service";
}

/** Every service in proto/taskmesh (and grpc.*), by fully-qualified name. */
export async function loadServices(): Promise<Map<string, DescService>> {
  const services = new Map<string, DescService>();
  for (const file of pbFiles(GEN_SRC).sort()) {
    const specifier = `@taskmesh/gen/${relative(GEN_SRC, file).replace(/\.ts$/, "")}`;
    const mod = (await import(specifier)) as Record<string, unknown>;
    for (const value of Object.values(mod)) if (isService(value)) services.set(value.typeName, value);
  }
  return services;
}

/** The gRPC path of a method, as it appears in `:path` and in Istio's `uri` and `paths`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/**
 * Safe to retry: declared `NO_SIDE_EFFECTS` or `IDEMPOTENT` in the .proto (`idempotency_level`).
 * Creates that are idempotent only when the caller sends an idempotency key are not: the mesh
 * cannot see the key, so a retry of a keyless create could make a duplicate.
 */
export function isIdempotent(method: DescMethod): boolean {
  return (
    method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS ||
    method.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT
  );
}

/** Resolves `pkg.Service` (all its methods) or `pkg.Service/Method` to methods; throws on an unknown name. */
export function resolveMethods(services: Map<string, DescService>, ref: string): DescMethod[] {
  const [serviceName = "", methodName] = ref.split("/");
  const service = services.get(serviceName);
  if (!service) throw new Error(`unknown Protobuf service "${serviceName}" (from "${ref}" in TOPOLOGY)`);
  if (methodName === undefined) return [...service.methods];
  const method = service.methods.find((m) => m.name === methodName);
  if (!method) throw new Error(`unknown method "${methodName}" on ${serviceName} (from "${ref}" in TOPOLOGY)`);
  return [method];
}
