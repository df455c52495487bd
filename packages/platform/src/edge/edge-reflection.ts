import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { ReflectionV1Implementation } from "@grpc/reflection/build/src/implementations/reflection-v1.js";
import * as v1 from "@taskmesh/gen/grpc/reflection/v1/reflection_pb";
import * as v1alpha from "@taskmesh/gen/grpc/reflection/v1alpha/reflection_pb";
import { reflectionPackage } from "../rpc/grpc-server.js";

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
 * Serves grpc.reflection.v1 and v1alpha (grpcurl and buf curl still ask v1alpha first or
 * only) on a connect router, listing `services` plus grpc.health.v1.Health. The lookups are
 * @grpc/reflection's own (`handleServerReflectionRequest`), the same code the backends serve;
 * only the message shapes are translated. The two versions' messages are field-for-field equal,
 * so one translation serves both.
 */
export function addReflection(router: ConnectRouter, services: readonly DescService[]): void {
  const impl = new ReflectionV1Implementation(reflectionPackage(services) as never, {
    services: [...services.map((s) => s.typeName), "grpc.health.v1.Health"],
  });
  const info = async function* (requests: AsyncIterable<v1.ServerReflectionRequest>) {
    for await (const req of requests) {
      // protobuf-es oneof {case, value} → proto-loader's `messageRequest` naming the set field.
      const r = req.messageRequest;
      const loader = { host: req.host, messageRequest: r.case, ...(r.case ? { [r.case]: r.value } : {}) };
      const res = impl.handleServerReflectionRequest(loader as LoaderRequest) as Record<string, unknown>;
      const c = RESPONSE_CASES.find((k) => res[k] != null) ?? "errorResponse";
      yield {
        validHost: req.host,
        originalRequest: req,
        messageResponse: { case: c, value: res[c] ?? { errorCode: 2, errorMessage: "no answer" } },
      } as never;
    }
  };
  router.service(v1.ServerReflection, { serverReflectionInfo: info });
  router.service(v1alpha.ServerReflection, { serverReflectionInfo: info as never });
}
