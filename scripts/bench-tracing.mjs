// Overhead of tracing on the gRPC path, in one run: the same loop of unary calls (grpc-js client →
// in-process GrpcServer over a real socket) with telemetry off, on without an exporter (the default
// when OTEL_EXPORTER_OTLP_ENDPOINT is unset: ids minted and propagated by GrpcServer and
// createGrpcClient, grpc-js not instrumented, nothing recorded), and on with every span sampled and
// handed to a no-op exporter (grpc-js instrumented). A fourth phase, the unexported configuration
// with the instrumentation forced on (`instrumentGrpc: true`), is how it was before the
// instrumentation was left out when nothing is exported; a fifth is no telemetry but an enabled
// AsyncLocalStorage, the floor on Node 20 (see enableAsyncLocalStorage). BENCH_PHASES=3 runs only
// the first three.
//
// Prints, per phase, calls/s and process CPU time per call (client and server share the process,
// so CPU per call is the steadier figure on a shared, loaded machine) with their ratios to "off",
// and the load average before and after.
//
//   npm run bench:tracing    (BENCH_CALLS=2000, BENCH_ROUNDS=3, BENCH_CONCURRENCY=1 by default)
//
// Uses the built platform (npm run build first; `npm run bench:tracing` does).
import { AsyncLocalStorage } from "node:async_hooks";
import { loadavg } from "node:os";
import { create } from "@bufbuild/protobuf";
import { AlwaysOnSampler } from "@opentelemetry/sdk-trace-node";
import { TaskSchema, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import {
  createGrpcClient,
  createLogger,
  GrpcServer,
  grpcJsInstrumented,
  register,
  startTelemetry,
} from "@taskmesh/platform";

const CALLS = Number(process.env.BENCH_CALLS ?? 2000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 1);
const WARMUP = Math.min(1000, Math.ceil(CALLS / 5));
const logger = createLogger("bench", { level: "silent" });
const TASK_ID = "10000000-0000-4000-8000-000000000000";
const task = create(TaskSchema, { id: TASK_ID, title: "bench", status: TaskStatus.OPEN });
const noop = () => ({});

/** A no-op exporter: spans are built, sampled and handed over, then dropped. */
const noopExporter = {
  export: (_spans, done) => done({ code: 0 }),
  shutdown: async () => {},
  forceFlush: async () => {},
};

/**
 * Not telemetry: an AsyncLocalStorage (what the context manager is built on) enabled with nothing
 * else. On Node 20 an enabled AsyncLocalStorage runs promise hooks on every promise in the process,
 * the price of having the active trace id after an `await` (logs' trace_id): the floor of any
 * configuration that keeps ids in logs.
 */
function enableAsyncLocalStorage() {
  const als = new AsyncLocalStorage();
  als.run(1, () => {});
  return { shutdown: async () => als.disable() };
}

async function phase(name, telemetryOptions) {
  const telemetry =
    telemetryOptions === "als"
      ? enableAsyncLocalStorage()
      : telemetryOptions
        ? await startTelemetry({ serviceName: "bench", ...telemetryOptions })
        : undefined;
  // Built after telemetry started: the instrumentation wraps handlers when they are registered.
  const server = new GrpcServer({
    name: "bench",
    logger,
    userTokens: { verify: async () => "user-1" },
    services: [
      register(
        TaskService,
        {
          getTask: () => ({ task }),
          createTask: noop,
          listTasks: noop,
          updateTask: noop,
          completeTask: noop,
          deleteTask: noop,
        },
        { kind: "user", anonymous: ["getTask"] },
      ),
    ],
  });
  const port = await server.listen(0);
  const client = createGrpcClient(TaskService, { address: `127.0.0.1:${port}` });
  const run = async (n) => {
    let next = 0;
    const worker = async () => {
      while (next++ < n) await client.getTask({ taskId: TASK_ID });
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  };
  await run(WARMUP);
  const cpu0 = process.cpuUsage();
  const started = process.hrtime.bigint();
  await run(CALLS);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const instrumented = grpcJsInstrumented();
  client.close();
  await server.shutdown(1000);
  await telemetry?.shutdown();
  return { name, callsPerSecond: CALLS / seconds, cpuMicrosPerCall: (cpu.user + cpu.system) / CALLS, instrumented };
}

// Rounds interleave the phases so drift in the machine's load hits each of them alike; the median
// round is reported.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const phases = [
  ["tracing off", undefined],
  ["on, no exporter (default: unsampled)", {}],
  ["on, sampled, no-op exporter", { sampler: new AlwaysOnSampler(), spanExporter: noopExporter }],
  ["on, no exporter, grpc-js instrumented", { instrumentGrpc: true }],
  ["off + AsyncLocalStorage enabled (floor)", "als"],
].slice(0, Number(process.env.BENCH_PHASES ?? 5));
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
const loadBefore = load();
const samples = phases.map(() => []);
const cpuSamples = phases.map(() => []);
const instrumented = phases.map(() => true);
for (let round = 0; round < ROUNDS; round++) {
  for (const [i, [name, options]] of phases.entries()) {
    const r = await phase(name, options);
    samples[i].push(r.callsPerSecond);
    cpuSamples[i].push(r.cpuMicrosPerCall);
    instrumented[i] = r.instrumented;
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = median(samples[0]);
const cpuBase = median(cpuSamples[0]);
console.log(
  `unary GetTask over a real socket, ${CALLS} calls per phase, concurrency ${CONCURRENCY}, median of ${ROUNDS} interleaved rounds, node ${process.version}, load average ${loadBefore} → ${load()}`,
);
for (const [i, [name]] of phases.entries()) {
  const cps = median(samples[i]);
  const cpu = median(cpuSamples[i]);
  console.log(
    `${name.padEnd(40)} ${cps.toFixed(0).padStart(6)} calls/s  ratio ${(cps / base).toFixed(3)}   ${cpu.toFixed(0).padStart(5)} µs CPU/call  ratio ${(cpu / cpuBase).toFixed(3)}   (grpc-js instrumented: ${instrumented[i]})`,
  );
}
