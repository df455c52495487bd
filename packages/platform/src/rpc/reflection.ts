import { create, type DescFile, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import type { ReflectionV1Implementation } from "@grpc/reflection/build/src/implementations/reflection-v1.js";
import { file_grpc_health_v1_health } from "@taskmesh/gen/grpc/health/v1/health_pb";
import * as v1 from "@taskmesh/gen/grpc/reflection/v1/reflection_pb";
import * as v1alpha from "@taskmesh/gen/grpc/reflection/v1alpha/reflection_pb";

/** The request in @grpc/reflection's (proto-loader, camelCase) shape. */
type LoaderRequest = Parameters<ReflectionV1Implementation["handleServerReflectionRequest"]>[0];
/** The answer in that shape: exactly one of these fields is set. */
const RESPONSE_CASES = [
  "listServicesResponse",
  "fileDescriptorResponse",
  "allExtensionNumbersResponse",
  "errorResponse",
] as const;

/**
 * grpc.reflection.v1 answers for `services` plus grpc.health.v1.Health, from @grpc/reflection's
 * own lookups (`handleServerReflectionRequest`); only the message shapes are translated. Built on
 * the first request: indexing the descriptors (and loading @grpc/reflection, proto-loader and
 * protobufjs) was about two thirds of a backend's start-up CPU after its imports, for a service
 * only grpcurl and buf curl call. The v1 and v1alpha messages are field-for-field equal, so one
 * translation serves both.
 */
export class LazyReflection {
  readonly #services: readonly DescService[];
  #impl: Promise<ReflectionV1Implementation> | undefined;

  constructor(services: readonly DescService[]) {
    this.#services = services;
  }

  async answer(req: v1.ServerReflectionRequest): Promise<v1.ServerReflectionResponse> {
    const impl = await this.#load();
    // protobuf-es oneof {case, value} → proto-loader's `messageRequest` naming the set field.
    const r = req.messageRequest;
    const loader = { host: req.host, messageRequest: r.case, ...(r.case ? { [r.case]: r.value } : {}) };
    const res = impl.handleServerReflectionRequest(loader as LoaderRequest) as Record<string, unknown>;
    const c = RESPONSE_CASES.find((k) => res[k] != null) ?? "errorResponse";
    return create(v1.ServerReflectionResponseSchema, {
      validHost: req.host,
      originalRequest: req,
      messageResponse: { case: c, value: res[c] ?? { errorCode: 2, errorMessage: "no answer" } },
    } as never);
  }

  #load(): Promise<ReflectionV1Implementation> {
    this.#impl ??= import("@grpc/reflection/build/src/implementations/reflection-v1.js").then(
      ({ ReflectionV1Implementation }) =>
        new ReflectionV1Implementation(reflectionPackage(this.#services) as never, {
          services: [...this.#services.map((s) => s.typeName), "grpc.health.v1.Health"],
        }),
    );
    // A failed load is not kept: the next request tries again.
    this.#impl.catch(() => {
      this.#impl = undefined;
    });
    return this.#impl;
  }
}

/** Serves grpc.reflection.v1 and v1alpha on a grpc-js server, answered by `reflection`. */
export function addReflectionToServer(server: grpc.Server, reflection: LazyReflection): void {
  for (const svc of [v1.ServerReflection, v1alpha.ServerReflection] as DescService[]) {
    const m = svc.methods[0];
    if (!m) continue;
    const definition: grpc.ServiceDefinition = {
      [m.name]: {
        path: `/${svc.typeName}/${m.name}`,
        requestStream: true,
        responseStream: true,
        requestSerialize: (x: v1.ServerReflectionRequest) => Buffer.from(toBinary(m.input, x as never)),
        requestDeserialize: (b: Buffer) => fromBinary(m.input, b),
        responseSerialize: (x: v1.ServerReflectionResponse) => Buffer.from(toBinary(m.output, x as never)),
        responseDeserialize: (b: Buffer) => fromBinary(m.output, b),
      },
    };
    server.addService(definition, {
      [m.name]: (call: grpc.ServerDuplexStream<v1.ServerReflectionRequest, v1.ServerReflectionResponse>) => {
        // Answers in request order, although the first one waits for the load.
        let answered = Promise.resolve();
        call.on("data", (req: v1.ServerReflectionRequest) => {
          answered = answered.then(async () => {
            call.write(await reflection.answer(req));
          });
        });
        call.on("end", () => {
          answered.then(
            () => call.end(),
            (err: unknown) =>
              call.emit("error", {
                code: grpc.status.INTERNAL,
                details: `reflection failed: ${err instanceof Error ? err.message : String(err)}`,
              }),
          );
        });
      },
    });
  }
}

/** Every file the services' descriptors depend on, serialized for @grpc/reflection. */
export function reflectionFiles(services: readonly DescService[]): Uint8Array[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.set(f.proto.name, f);
    for (const d of f.dependencies) visit(d);
  };
  for (const s of services) visit(s.file);
  visit(file_grpc_health_v1_health);
  return [...seen.values()].map((f) => toBinary(FileDescriptorProtoSchema, f.proto));
}

/** The shape @grpc/reflection reads from a proto-loader package definition: only fileDescriptorProtos. */
export function reflectionPackage(services: readonly DescService[]) {
  return { files: { fileDescriptorProtos: reflectionFiles(services).map((b) => Buffer.from(b)) } };
}
