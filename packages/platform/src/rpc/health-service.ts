import { create, type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  Health,
  type HealthCheckRequest,
  HealthCheckRequestSchema,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
  type HealthListRequest,
  HealthListRequestSchema,
  type HealthListResponse,
  HealthListResponseSchema,
} from "@taskmesh/gen/grpc/health/v1/health_pb";

/** A status a service reports. */
export type ServingStatus = "SERVING" | "NOT_SERVING";

/** More names than this and List answers RESOURCE_EXHAUSTED, as the health protocol asks. */
const LIST_LIMIT = 100;

/**
 * grpc.health.v1.Health on a grpc-js server (Check, Watch, List) over the statuses set with
 * `setStatus`, from the generated descriptors. It replaces grpc-health-check's
 * HealthImplementation, which parsed health.proto with proto-loader and protobufjs when imported:
 * ~80 ms of CPU in each of the seven processes at start. Watch sends the current status, then
 * each change (SERVICE_UNKNOWN for a name never set, until it is set).
 */
export class HealthService {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #watchers = new Map<string, Set<(status: ServingStatus) => void>>();

  constructor(initial: Readonly<Record<string, ServingStatus>> = {}) {
    for (const [service, status] of Object.entries(initial)) this.#statuses.set(service, status);
  }

  setStatus(service: string, status: ServingStatus): void {
    const before = this.#statuses.get(service);
    this.#statuses.set(service, status);
    if (before !== status) for (const watcher of this.#watchers.get(service) ?? []) watcher(status);
  }

  addToServer(server: grpc.Server): void {
    const m = Health.method;
    const path = (name: string) => `/${Health.typeName}/${name}`;
    server.addService(
      {
        check: rpc(path(m.check.name), HealthCheckRequestSchema, HealthCheckResponseSchema, false),
        watch: rpc(path(m.watch.name), HealthCheckRequestSchema, HealthCheckResponseSchema, true),
        list: rpc(path(m.list.name), HealthListRequestSchema, HealthListResponseSchema, false),
      },
      {
        check: (
          call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
          done: grpc.sendUnaryData<HealthCheckResponse>,
        ) => {
          const status = this.#statuses.get(call.request.service);
          if (status) done(null, response(status));
          else
            done({
              code: grpc.status.NOT_FOUND,
              details: `Health status unknown for service ${call.request.service}`,
            });
        },
        watch: (call: grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
          const service = call.request.service;
          const send = (status: ServingStatus) => call.write(response(status));
          const watchers = this.#watchers.get(service) ?? new Set();
          this.#watchers.set(service, watchers.add(send));
          call.on("cancelled", () => watchers.delete(send));
          const status = this.#statuses.get(service);
          if (status) send(status);
          else
            call.write(
              create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN }),
            );
        },
        list: (
          _call: grpc.ServerUnaryCall<HealthListRequest, HealthListResponse>,
          done: grpc.sendUnaryData<HealthListResponse>,
        ) => {
          if (this.#statuses.size > LIST_LIMIT)
            return done({ code: grpc.status.RESOURCE_EXHAUSTED, details: "Too many services to list." });
          const statuses = Object.fromEntries([...this.#statuses].map(([name, status]) => [name, response(status)]));
          done(null, create(HealthListResponseSchema, { statuses }));
        },
      },
    );
  }
}

function response(status: ServingStatus): HealthCheckResponse {
  return create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus[status] });
}

function rpc<I extends DescMessage, O extends DescMessage>(
  path: string,
  input: I,
  output: O,
  responseStream: boolean,
): grpc.MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return {
    path,
    requestStream: false,
    responseStream,
    requestSerialize: (m) => Buffer.from(toBinary(input, m)),
    requestDeserialize: (b) => fromBinary(input, b),
    responseSerialize: (m) => Buffer.from(toBinary(output, m)),
    responseDeserialize: (b) => fromBinary(output, b),
  };
}
