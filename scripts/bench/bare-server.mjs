// The baseline a service is compared with: a bare grpc-js server (no auth, validation,
// interceptors or telemetry) serving GetTask, ListTasks and CreateTask for one user with the
// tasks service's own store, i.e. the same SQL and the same transaction (WAL, synchronous=FULL
// from openDatabase; with BARE_GROUP_COMMIT=1, as the bench runs it, creates commit as tasks'
// CreateTask does). Reads go to READ_DB (the running tasks service's file, read concurrently
// under WAL); creates to WRITE_DB (a file of its own in the same directory, so the same disk).
// Prints "ready <port>" on stdout.
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { openDatabase, WalSync } from "@taskmesh/platform";
import Database from "better-sqlite3";
import { toTask } from "../../services/tasks/dist/task-record.js";
import { inputFields } from "../../services/tasks/dist/task-service.js";
import { MIGRATIONS, TasksStore } from "../../services/tasks/dist/tasks-store.js";
import { rawDefinition } from "./grpc-raw.mjs";

const { READ_DB, WRITE_DB, BENCH_USER, BARE_GROUP_COMMIT } = process.env;
// The live file is only read (it is the tasks service's; its migrations are its own business).
const readDb = new Database(READ_DB, { readonly: true });
readDb.pragma("busy_timeout = 5000");
const reads = new TasksStore(readDb);
const writeDb = openDatabase(WRITE_DB, MIGRATIONS);
const writes = new TasksStore(writeDb);
// BARE_GROUP_COMMIT=1: creates commit as tasks' CreateTask does (WalSync: unsynced commit, answer
// after a shared fdatasync) instead of one synchronous=FULL commit each.
const walSync = BARE_GROUP_COMMIT === "1" ? new WalSync(writeDb) : undefined;
const m = TaskService.method;
const unary = (fn) => (call, cb) => {
  try {
    cb(null, fn(call.request));
  } catch (err) {
    cb({ code: grpc.status.INTERNAL, details: String(err) });
  }
};
const server = new grpc.Server();
server.addService(rawDefinition(TaskService, ["getTask", "listTasks", "createTask"]), {
  getTask: unary((req) => create(m.getTask.output, { task: toTask(reads.get(BENCH_USER, req.taskId)) })),
  listTasks: unary((req) => {
    const size = req.pageSize || 50;
    // The query the tasks service makes for a ListTasks without filters (every ListQuery field:
    // one left undefined counts as a filter and binds NULL, which matches no row).
    const rows = reads.list({
      userId: BENCH_USER,
      status: null,
      priority: null,
      dueAfterMs: null,
      dueBeforeMs: null,
      projectId: null,
      labelId: null,
      hideArchived: true,
      order: "due",
      after: null,
      limit: size + 1,
    });
    return create(m.listTasks.output, { tasks: rows.slice(0, size).map((r) => toTask(r.task)) });
  }),
  createTask: (call, cb) => {
    try {
      const fields = inputFields("task", call.request.task);
      const write = () => writes.create(BENCH_USER, () => fields, { id: randomUUID(), now: Date.now(), maxTasks: 1e9 });
      const result = walSync ? walSync.commit(write) : write();
      const answer = () => cb(null, create(m.createTask.output, { task: toTask(result.task) }));
      if (!walSync) return answer();
      walSync.sync().then(answer, (err) => cb({ code: grpc.status.INTERNAL, details: String(err) }));
    } catch (err) {
      cb({ code: grpc.status.INTERNAL, details: String(err) });
    }
  },
});
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  console.log(`ready ${port}`);
});
process.on("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
// Started by the bench with stdin a pipe: when the bench is gone (even killed by a signal), so is this.
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
