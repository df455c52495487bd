// npm run bench: the performance table of issue 11, every row a ratio against a baseline measured
// in the same run on the same machine, with absolute figures and HDR percentiles (perf_hooks).
// Starts the system the way `npm start --no-build` does (packages/runner, free ports, a temporary
// data dir), plus a bare grpc-js server (bare-server.mjs) and nats-server for the relay rows.
//
//   npm run bench [-- --out <file>] [-- --tiny] [-- --duration <ms>] [-- --scale 1000,10000]
//
// --cpu-prof <dir> profiles every service (cpu-prof-preload.cjs; <service>-<pid>.cpuprofile written there at stop; read
// them with scripts/bench/cpuprofile-top.mjs).
// --keep leaves the data dir (logs/<service>.log) for a look afterwards.
// --rates 100,300,500 sets the event-latency rates (default 100,500); each events row carries its
// stages (event-stages.mjs: append, publish, PubAck+mark, delivery, apply+commit).
// --tiny is the smoke mode of `npm test` (tests/bench): every row, seconds instead of minutes.
// Writes the JSON to --out (default .data/bench/latest.json).
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { Agent } from "node:http";
import { cpus, loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createHistogram, performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { openDatabase } from "@taskmesh/platform";
import { tempDir } from "@taskmesh/platform/testing";
import { startSystem } from "@taskmesh/runner";
import Database from "better-sqlite3";
import { connect as natsConnect } from "nats";
import { inputFields } from "../../services/tasks/dist/task-service.js";
import { MIGRATIONS as TASK_MIGRATIONS, TasksStore } from "../../services/tasks/dist/tasks-store.js";
import { eventStages } from "./event-stages.mjs";
import { rawClient } from "./grpc-raw.mjs";
import { closedLoop, openLoop, summary } from "./measure.mjs";
import { relayBench } from "./relay-bench.mjs";
import { spawnReady } from "./spawn-ready.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values: args } = parseArgs({
  options: {
    out: { type: "string" },
    tiny: { type: "boolean" },
    duration: { type: "string" },
    scale: { type: "string" },
    keep: { type: "boolean" },
    "cpu-prof": { type: "string" },
    only: { type: "string" },
    rates: { type: "string" },
  },
});
/** --only relay,edge,write,events,scale,memory: run those sections (default all; start-up is always measured). */
const SECTIONS = ["relay", "edge", "write", "events", "scale", "memory"];
const only = args.only ? args.only.split(",") : SECTIONS;
for (const s of only)
  if (!SECTIONS.includes(s)) throw new Error(`--only: unknown section ${s} (${SECTIONS.join(", ")})`);
const want = (s) => only.includes(s);
const tiny = args.tiny ?? false;
const D = Number(args.duration ?? (tiny ? 300 : 2000));
const WARMUP = tiny ? 100 : 400;
const SCALE = (args.scale ?? (tiny ? "200,400" : "1000,10000")).split(",").map(Number);
/** --rates 100,300,500: the event-latency rates (creates/s). */
const RATES = (args.rates ?? "100,500").split(",").map(Number);
const LATENCY_MS = tiny ? 400 : 4000;
const CONCURRENCY = [1, 32];
const out = resolve(args.out ?? join(root, ".data/bench/latest.json"));
const rows = [];
const log = (msg) => process.stderr.write(`bench: ${msg}\n`);

/** One table row: `value` against `baseline` (same unit, same run); ratio = value / baseline. */
function row(id, label, value, baseline, unit, extra = {}) {
  const ratio = baseline.value > 0 ? Math.round((value.value / baseline.value) * 100) / 100 : null;
  rows.push({ id, label, unit, value, baseline, ratio, ...extra });
  log(`${id}: ${value.value} vs ${baseline.value} ${unit} (${ratio}×)`);
}
const fig = (name, r) => ({ name, value: r.rate, p50: r.p50, p99: r.p99, p999: r.p999, errors: r.errors });
/**
 * PSS (proportional set size) in MiB: RSS with pages shared between processes divided among them.
 * Each service's RSS counts the ~47 MiB of the node binary it maps, which seven services share.
 */
const pssMiB = (pid) => {
  try {
    const m = /Pss:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
};
const rssMiB = (pid) => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- relay ------------------------------------------------------------------------------------
if (args["cpu-prof"]) mkdirSync(resolve(args["cpu-prof"]), { recursive: true });
if (want("relay")) {
  log("relay vs raw JetStream publish");
  const relay = await relayBench({ n: tiny ? 300 : 5000, rounds: tiny ? 1 : 2 });
  row(
    "relay.drain",
    "outbox relay drain vs raw nats.js async publish (same stream)",
    { name: "relay", value: relay.relay, stats: relay.stats },
    { name: `raw js.publish, ${relay.window} in flight`, value: relay.raw },
    "msg/s",
    { target: 0.5 },
  );
  row(
    "relay.reconciling",
    `relay drain with the outbox reconciler checking beside it every 20 ms (${relay.checked} rows checked) vs without`,
    { name: "relay + reconciler", value: relay.reconciling },
    { name: "relay alone", value: relay.relay },
    "msg/s",
  );
}

// --- the system ---------------------------------------------------------------------------------
const data = tempDir("taskmesh-bench-");
const t0 = performance.now();
const system = await startSystem({
  dataDir: data.path,
  freePorts: true,
  logLevel: "warn",
  // One client address for everything: the per-address/per-user limits would shed the bench itself.
  env: {
    RATE_LIMIT_RPS: "0",
    LOGIN_RATE_LIMIT_PER_MINUTE: "0",
    MAX_TASKS_PER_USER: "1000000",
    ...(args["cpu-prof"]
      ? {
          NODE_OPTIONS: `--require ${join(root, "scripts/bench/cpu-prof-preload.cjs")}`,
          BENCH_CPU_PROF_DIR: resolve(args["cpu-prof"]),
        }
      : {}),
  },
});
const startupMs = Math.round(performance.now() - t0);
log(`system ready in ${startupMs} ms`);
const bare = { proc: undefined, port: 0 };
const floor = { proc: undefined };
const clients = [];
try {
  const gatewayAddr = system.endpoints.gateway.replace(/^http:\/\//, "");
  const gw = rawClient(gatewayAddr);
  const direct = rawClient(system.endpoints.grpc.tasks);
  clients.push(gw, direct);
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 64 });
  const connect = createClient(
    TaskService,
    createConnectTransport({
      baseUrl: system.endpoints.gateway,
      httpVersion: "1.1",
      // JSON, as the web client (connect-web) sends; connect-node would default to binary.
      useBinaryFormat: false,
      nodeOptions: { agent: keepAlive },
    }),
  );
  const M = TaskService.method;
  const services = Object.entries(system.services).filter(([name]) => name !== "nats");
  await sleep(tiny ? 500 : 3000); // let start-up work (JIT, first scrapes) settle before "idle"
  const idle = Object.fromEntries(services.map(([name, s]) => [name, rssMiB(s.pid)]));
  const idlePss = Object.fromEntries(services.map(([name, s]) => [name, pssMiB(s.pid)]));

  /** Registers and logs in through the gateway; retried, since it follows phases that may overload the edge. */
  const signUp = async (attempt = 1) => {
    try {
      return await signUpOnce();
    } catch (err) {
      if (attempt >= 5) throw err;
      log(`sign-up failed (${err.message}); again in 1 s`);
      await sleep(1000);
      return await signUp(attempt + 1);
    }
  };
  const signUpOnce = async () => {
    const email = `bench-${randomUUID()}@example.com`;
    const password = "correct-horse-battery";
    const reg = await gw.call(
      UserService.method.register,
      create(UserService.method.register.input, { email, password }),
    );
    const login = await gw.call(UserService.method.login, create(UserService.method.login.input, { email, password }));
    return { userId: reg.user.id, token: login.accessToken };
  };
  const WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];
  const taskInput = (i) =>
    create(M.createTask.input, { task: { title: `Task ${i} ${WORDS[i % WORDS.length]} report`, notes: "bench" } });
  /** Creates tasks directly on tasks (32 in flight) until the user has `n`. */
  const seed = async (user, from, n) => {
    let next = from;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < n) await direct.call(M.createTask, taskInput(next++), user.token);
      }),
    );
  };
  const analytics = new Database(join(data.path, "analytics.db"), { readonly: true });
  analytics.pragma("busy_timeout = 5000");
  const analyticsCount = analytics.prepare("SELECT count(*) FROM tasks WHERE user_id = ?").pluck();
  const DAY = 86_400_000;
  /** A daily recurring task due tomorrow (CompleteTask's scale rows complete these). */
  const recurringInput = (i) =>
    create(M.createTask.input, {
      task: {
        title: `Task ${i} ${WORDS[i % WORDS.length]} standup`,
        notes: "bench",
        dueTime: timestampFromMs(Date.now() + DAY),
        recurrenceRule: "FREQ=DAILY",
      },
    });
  /**
   * Seeds a big user fast: the tasks service's own store writes the rows and their outbox events
   * (1,000 per transaction, into the live WAL database), its relay publishes them (it polls), and
   * analytics indexes them as it would any task.created. The API path (seed) would take ~15 min for 100k.
   * Each user of `userIds` gets tasks `from`..`n`; the last `recurring` are daily recurring ones, whose ids are returned.
   */
  const bulkSeed = async (userIds, from, n, recurring = 0) => {
    const tasksDb = openDatabase(join(data.path, "tasks.db"), TASK_MIGRATIONS);
    tasksDb.pragma("busy_timeout = 10000");
    const store = new TasksStore(tasksDb);
    const ids = [];
    const chunk = tasksDb.transaction((userId, a, b) => {
      // In the user's Inbox, as CreateTask without project_id places it (ListTasks lists a user's
      // tasks of the projects they have a role in, so a task outside any would never be read).
      const projectId = store.projects.inbox(userId, Date.now()).id;
      for (let i = a; i < b; i++) {
        const rec = i >= n - recurring;
        const fields = { ...inputFields("task", (rec ? recurringInput(i) : taskInput(i)).task), projectId };
        const id = randomUUID();
        store.create(userId, () => fields, { id, now: Date.now(), maxTasks: 1e9 });
        if (rec) ids.push(id);
      }
    });
    for (const userId of userIds) {
      for (let i = from; i < n; i += 1000) {
        chunk.immediate(userId, i, Math.min(n, i + 1000));
        await sleep(0); // let the bench's own timers run
      }
    }
    tasksDb.close();
    return ids;
  };
  /** Until every durable consumer of every stream has nothing pending (the seed's events all handled everywhere). */
  const settled = async () => {
    const nc = await natsConnect({ servers: system.endpoints.nats });
    try {
      const jsm = await nc.jetstreamManager();
      const deadline = Date.now() + 300_000;
      for (;;) {
        let pending = 0;
        for await (const st of jsm.streams.list()) {
          for await (const ci of jsm.consumers.list(st.config.name)) pending += ci.num_pending + ci.num_ack_pending;
        }
        if (pending === 0 || Date.now() > deadline) return;
        await sleep(250);
      }
    } finally {
      await nc.close();
    }
  };
  const indexed = async (userId, n) => {
    const limitMs = 120_000 + n * 5;
    const deadline = Date.now() + limitMs;
    while (analyticsCount.get(userId) < n) {
      if (Date.now() > deadline) throw new Error(`analytics did not index ${n} tasks in ${limitMs / 1000} s`);
      await sleep(50);
    }
  };

  // --- edge hop and service vs bare ----------------------------------------------------------
  const reader = await signUp();
  await seed(reader, 0, tiny ? 60 : 1000);
  const someTask = (await direct.call(M.listTasks, create(M.listTasks.input, { pageSize: 1 }), reader.token)).tasks[0];
  const barePort = await spawnReady(bare, "bare-server.mjs", {
    READ_DB: join(data.path, "tasks.db"),
    WRITE_DB: join(data.path, "bare.db"),
    BENCH_USER: reader.userId,
    // Creates commit as tasks' CreateTask does (WalSync group commit), so write.* compares the same durability.
    BARE_GROUP_COMMIT: "1",
  });
  const bareClient = rawClient(`127.0.0.1:${barePort}`);
  clients.push(bareClient);
  // The least an edge hop in Node costs here (floor-proxy.mjs): same run, in front of the same tasks.
  const floorPort = await spawnReady(floor, "floor-proxy.mjs", { TARGET: system.endpoints.grpc.tasks });
  const floorClient = rawClient(`127.0.0.1:${floorPort}`);
  clients.push(floorClient);
  const floorConnect = createClient(
    TaskService,
    createConnectTransport({
      baseUrl: `http://127.0.0.1:${floor.ports[1]}`,
      httpVersion: "1.1",
      // JSON, as the web client (connect-web) sends; connect-node would default to binary.
      useBinaryFormat: false,
      nodeOptions: { agent: keepAlive },
    }),
  );
  const reads = {
    GetTask: {
      req: create(M.getTask.input, { taskId: someTask.id }),
      method: M.getTask,
      connect: (req, o) => connect.getTask(req, o),
      floorConnect: (req, o) => floorConnect.getTask(req, o),
    },
    ListTasks: {
      req: create(M.listTasks.input, { pageSize: 50 }),
      method: M.listTasks,
      connect: (req, o) => connect.listTasks(req, o),
      floorConnect: (req, o) => floorConnect.listTasks(req, o),
    },
  };
  const loop = (call, c) => closedLoop(call, { concurrency: c, durationMs: D, warmupMs: WARMUP });
  for (const [name, r] of want("edge") ? Object.entries(reads) : []) {
    for (const c of CONCURRENCY) {
      log(`${name} c=${c}`);
      const auth = { headers: { authorization: `Bearer ${reader.token}` } };
      const b = await loop(() => bareClient.call(r.method, r.req), c);
      const d = await loop(() => direct.call(r.method, r.req, reader.token), c);
      const g = await loop(() => gw.call(r.method, r.req, reader.token), c);
      const f = await loop(() => floorClient.call(r.method, r.req, reader.token), c);
      const cj = await loop(() => r.connect(r.req, auth), c);
      const fc = await loop(() => r.floorConnect(r.req, auth), c);
      const tag = `${name.toLowerCase()}.c${c}`;
      row(
        `edge.grpc.${tag}`,
        `${name} c=${c}: gateway (gRPC) vs direct grpc-js to tasks`,
        fig("gateway gRPC", g),
        fig("direct", d),
        "req/s",
        { target: 0.5 },
      );
      row(
        `edge.connect.${tag}`,
        `${name} c=${c}: gateway (Connect JSON, HTTP/1.1) vs direct grpc-js to tasks`,
        fig("gateway Connect", cj),
        fig("direct", d),
        "req/s",
        { target: 0.5 },
      );
      row(
        `edge.floor.${tag}`,
        `${name} c=${c}: the least a Node edge hop costs (floor-proxy.mjs: http2 server + grpc-js, bytes only) vs direct`,
        fig("floor proxy", f),
        fig("direct", d),
        "req/s",
      );
      row(
        `edge.floor-connect.${tag}`,
        `${name} c=${c}: the least a Node Connect edge costs (floor-proxy.mjs: http + JSON↔protobuf + grpc-js) vs direct`,
        fig("floor proxy (Connect)", fc),
        fig("direct", d),
        "req/s",
      );
      row(
        `service.${tag}`,
        `${name} c=${c}: tasks vs bare grpc-js + the same SQLite read`,
        fig("tasks", d),
        fig("bare", b),
        "req/s",
      );
    }
  }

  // --- write path ------------------------------------------------------------------------------
  const writer = await signUp();
  let w = 0;
  for (const c of want("write") ? CONCURRENCY : []) {
    log(`CreateTask c=${c}`);
    const b = await loop(() => bareClient.call(M.createTask, taskInput(w++)), c);
    const d = await loop(() => direct.call(M.createTask, taskInput(w++), writer.token), c);
    const g = await loop(() => gw.call(M.createTask, taskInput(w++), writer.token), c);
    row(
      `write.gateway.c${c}`,
      `CreateTask c=${c}: gateway (gRPC) vs bare grpc-js + the same transaction and commit (WalSync group commit)`,
      fig("gateway", g),
      fig("bare", b),
      "req/s",
      { target: 0.4 },
    );
    row(
      `write.service.c${c}`,
      `CreateTask c=${c}: tasks direct vs bare grpc-js + the same transaction`,
      fig("tasks", d),
      fig("bare", b),
      "req/s",
    );
  }

  // --- event latency: task.created → analytics read model -------------------------------------
  // Latency = analytics row visible (bench clock) − the task's create_time (tasks' clock, set just
  // before its transaction; same machine, ms resolution): the commit → read-model path alone,
  // without the CreateTask answer's own trip back through the gateway.
  const newest = analytics.prepare("SELECT id, task_id AS taskId FROM tasks WHERE id > ? ORDER BY id").raw();
  const wallNow = () => performance.timeOrigin + performance.now();
  for (const rate of want("events") ? RATES : []) {
    const user = await signUp();
    const created = new Map(); // task id → create_time (epoch ms)
    const visible = new Map(); // task id → first seen in analytics (epoch ms)
    let last = analytics.prepare("SELECT coalesce(max(id), 0) FROM tasks").pluck().get();
    const poll = setInterval(() => {
      const now = wallNow();
      for (const [id, taskId] of newest.all(last)) {
        last = id;
        visible.set(taskId, now);
      }
    }, 1);
    log(`event latency at ${rate}/s`);
    const sent = await openLoop(
      async (i) => {
        const res = await gw.call(M.createTask, taskInput(i), user.token);
        const t = res.task.createTime;
        created.set(res.task.id, Number(t.seconds) * 1000 + t.nanos / 1e6);
      },
      { rate, durationMs: LATENCY_MS },
    );
    const deadline = Date.now() + 30_000;
    while ([...created.keys()].some((id) => !visible.has(id)) && Date.now() < deadline) await sleep(10);
    clearInterval(poll);
    const h = createHistogram({ lowest: 1, highest: 60e9, figures: 3 });
    let missing = 0;
    for (const [id, t] of created) {
      const v = visible.get(id);
      if (v === undefined) missing++;
      h.record(Math.max(1, Math.round(((v ?? wallNow()) - t) * 1e6)));
    }
    const s = summary(h);
    const shed = Object.values(sent.errors).reduce((a, b) => a + b, 0);
    const stages = await eventStages({
      tasksDbPath: join(data.path, "tasks.db"),
      analytics,
      natsUrl: system.endpoints.nats,
      created,
      visible,
    }).catch((err) => ({ error: err.message }));
    log(`events at ${rate}/s by stage (ms, p50/p99/max; median of the slowest 1 %): ${JSON.stringify(stages)}`);
    const figures = {
      name: "task.created → analytics visible",
      value: s.p99,
      ...s,
      sentRate: sent.sentRate,
      created: created.size,
      failedCreates: shed,
      errors: sent.errors,
      missing,
      stages,
      loadavg: loadavg(),
    };
    // No same-run baseline fits an absolute latency target: the row compares p99 with the target.
    row(
      `events.latency.${rate}`,
      `task.created → analytics read model visible at ${rate} creates/s (p99 ms; failed creates in errors)`,
      figures,
      { name: "target p99", value: 5 },
      "ms",
      { target: 1 },
    );
  }

  // --- scale: one user with many tasks, and one among many users -----------------------------
  // Each level seeds COMPLETABLE daily recurring tasks among the user's N: CompleteTask completes
  // one per call (each completion makes recurrence create the next occurrence through tasks, as
  // in use), so a loop never completes the same task twice.
  const COMPLETABLE = tiny ? 300 : 3000;
  const USERS = tiny ? 20 : 1000;
  const TASKS_PER_USER = tiny ? 5 : 20;
  /** ListTasks, SearchTasks and CompleteTask (recurring, from `open`) of `user` at each concurrency. */
  const measureUser = async (user, open) => {
    const out = {};
    for (const c of CONCURRENCY) {
      const list = await loop(() => gw.call(M.listTasks, create(M.listTasks.input, { pageSize: 50 }), user.token), c);
      const search = await loop(
        (_w, i) =>
          gw.call(
            AnalyticsService.method.searchTasks,
            create(AnalyticsService.method.searchTasks.input, { query: WORDS[i % WORDS.length] }),
            user.token,
          ),
        c,
      );
      const complete = await loop(() => {
        const taskId = open.pop();
        // An exhausted pool fails after a pause (a synchronous failure would spin the loop).
        if (!taskId) return sleep(5).then(() => Promise.reject(new Error("no open recurring task left")));
        return gw.call(M.completeTask, create(M.completeTask.input, { taskId }), user.token);
      }, c);
      out[c] = { list, search, complete };
    }
    await settled(); // the occurrences the completions asked for, before the next seeding
    return out;
  };
  const big = await signUp();
  const scale = {};
  let have = 0;
  for (const n of want("scale") ? SCALE : []) {
    log(`seeding ${n} tasks`);
    const open = await bulkSeed([big.userId], have, n, Math.min(COMPLETABLE, n - have));
    have = n;
    await indexed(big.userId, n);
    await settled(); // reminders, recurrence... still handling the seed would load the measurement
    scale[n] = await measureUser(big, open);
  }
  const [small, large] = [SCALE[0], SCALE.at(-1)];
  let crowd;
  if (want("scale")) {
    // 1k users: USERS others with TASKS_PER_USER tasks each (store-seeded under random user ids),
    // then a signed-up user with the small level's task count, measured like the big user was.
    log(`seeding ${USERS} users × ${TASKS_PER_USER} tasks`);
    const others = Array.from({ length: USERS }, () => randomUUID());
    await bulkSeed(others, 0, TASKS_PER_USER);
    const one = await signUp();
    const open = await bulkSeed([one.userId], 0, small, Math.min(COMPLETABLE, small));
    await indexed(others.at(-1), TASKS_PER_USER);
    await indexed(one.userId, small);
    await settled();
    crowd = await measureUser(one, open);
  }
  for (const c of want("scale") ? CONCURRENCY : []) {
    for (const [key, method] of [
      ["list", "ListTasks"],
      ["search", "SearchTasks"],
      ["complete", "CompleteTask (recurring)"],
    ]) {
      row(
        `scale.${key}.c${c}`,
        `${method} c=${c} (gateway): ${large} vs ${small} tasks of one user`,
        fig(`${large} tasks`, scale[large][c][key]),
        fig(`${small} tasks`, scale[small][c][key]),
        "req/s",
        key === "list" ? { target: 1 } : {},
      );
      row(
        `scale.users.${key}.c${c}`,
        `${method} c=${c} (gateway): a user with ${small} tasks among ${USERS} users (${TASKS_PER_USER} tasks each) vs the user with ${small} tasks alone`,
        fig(`among ${USERS} users`, crowd[c][key]),
        fig("alone", scale[small][c][key]),
        "req/s",
      );
    }
  }

  // --- memory and start-up ---------------------------------------------------------------------
  const loaded = Object.fromEntries(services.map(([name, s]) => [name, rssMiB(s.pid)]));
  const loadedPss = Object.fromEntries(services.map(([name, s]) => [name, pssMiB(s.pid)]));
  for (const [name] of want("memory") ? services : []) {
    row(
      `rss.${name}`,
      `RSS of ${name}: after load vs idle (MiB)`,
      { name: "after load", value: loaded[name] },
      { name: "idle", value: idle[name] },
      "MiB",
      { targetIdleMiB: 80, pssIdleMiB: idlePss[name], pssAfterLoadMiB: loadedPss[name] },
    );
  }
  const total = (o) => Object.values(o).reduce((a, b) => a + (b ?? 0), 0);
  if (want("memory"))
    row(
      "rss.total",
      "RSS of every service: after load vs idle (MiB)",
      { name: "after load", value: total(loaded) },
      { name: "idle", value: total(idle) },
      "MiB",
      { pssIdleMiB: total(idlePss), pssAfterLoadMiB: total(loadedPss) },
    );
  row(
    "startup",
    "start-up of the system (startSystem, as npm start --no-build) to all ready (ms)",
    { name: "all ready", value: startupMs },
    { name: "target", value: 5000 },
    "ms",
    { target: 1 },
  );
  analytics.close();
} finally {
  for (const c of clients) c.close();
  for (const p of [bare.proc, floor.proc]) {
    p?.removeAllListeners("exit");
    p?.kill("SIGTERM");
  }
  await system.stop();
  if (args.keep) log(`data dir kept: ${data.path}`);
  else data.remove();
}

// --- output ------------------------------------------------------------------------------------
const report = {
  machine: {
    cpus: cpus().length,
    model: cpus()[0]?.model,
    node: process.version,
    platform: process.platform,
    loadavg: loadavg(),
  },
  mode: tiny ? "tiny" : "full",
  durationMs: D,
  at: new Date().toISOString(),
  rows,
};
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);

const cell = (v) => (v === undefined || v === null ? "" : String(v));
const table = [["row", "value", "baseline", "ratio", "p50 ms", "p99 ms", "p999 ms", "baseline p50/p99", "unit"]];
for (const r of rows) {
  table.push([
    r.id,
    cell(r.value.value),
    cell(r.baseline.value),
    r.ratio === null ? "" : `${r.ratio}×`,
    cell(r.value.p50),
    cell(r.value.p99),
    cell(r.value.p999),
    r.baseline.p50 !== undefined ? `${r.baseline.p50}/${r.baseline.p99}` : "",
    r.unit,
  ]);
}
const widths = table[0].map((_, i) => Math.max(...table.map((t) => t[i].length)));
console.log(
  `\ntaskmesh bench (${report.mode}; ${report.machine.cpus} cores ${report.machine.model}; Node ${process.versions.node}; load ${loadavg()
    .map((l) => l.toFixed(1))
    .join(" ")})\n`,
);
for (const [i, t] of table.entries()) {
  console.log(t.map((c, j) => (j === 0 ? c.padEnd(widths[j]) : c.padStart(widths[j]))).join("  "));
  if (i === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
}
const pss = rows.filter((r) => r.pssIdleMiB !== undefined);
if (pss.length > 0)
  console.log(
    `\nPSS idle/after load, MiB (shared pages such as the node binary divided among the processes): ${pss
      .map((r) => `${r.id.replace("rss.", "")} ${r.pssIdleMiB}/${r.pssAfterLoadMiB}`)
      .join(", ")}`,
  );
console.log(`\nJSON: ${out}`);
