import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import * as v1 from "@taskmesh/gen/grpc/reflection/v1/reflection_pb";
import * as v1alpha from "@taskmesh/gen/grpc/reflection/v1alpha/reflection_pb";
import { LazyReflection } from "../rpc/reflection.js";

/**
 * Serves grpc.reflection.v1 and v1alpha (grpcurl and buf curl still ask v1alpha first or
 * only) on a connect router, listing `services` plus grpc.health.v1.Health, with the same
 * LazyReflection the backends serve (built on the first request).
 */
export function addReflection(router: ConnectRouter, services: readonly DescService[]): void {
  const reflection = new LazyReflection(services);
  const info = async function* (requests: AsyncIterable<v1.ServerReflectionRequest>) {
    for await (const req of requests) yield await reflection.answer(req);
  };
  router.service(v1.ServerReflection, { serverReflectionInfo: info });
  router.service(v1alpha.ServerReflection, { serverReflectionInfo: info as never });
}
