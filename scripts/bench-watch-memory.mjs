// Memory per idle WatchNotifications stream at the gateway, in one run of the real system
// (startSystem: nats-server and every built service as processes). Opens BENCH_STREAMS idle watch
// streams through the gateway (over BENCH_STREAMS / 5 users, 5 each: the per-user limit), and
// reads the gateway process's RSS from /proc before and after (after a settle, with the streams
// still open). Prints the RSS of the gateway and of notifications, and the difference per stream.
//
//   npm run bench:watch-memory     (BENCH_STREAMS=500 by default)
//
// One run here (2 shared cores, Node 20): 500 streams, gateway RSS 95.9 -> 131.9 MB, ~74 KB per
// idle stream; so the default 5 streams per user bound one account to ~0.4 MB of gateway memory.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { startSystem } from "@taskmesh/runner";

const STREAMS = Number(process.env.BENCH_STREAMS ?? 500);
const PER_USER = 5;

const rssMb = (pid) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) / 1024;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dataDir = mkdtempSync(join(tmpdir(), "bench-watch-"));
const system = await startSystem({
  dataDir,
  freePorts: true,
  logLevel: "warn",
  env: { RATE_LIMIT_RPS: "0", LOGIN_RATE_LIMIT_PER_MINUTE: "0" },
});
const abort = new AbortController();
try {
  const transport = createGrpcTransport({ baseUrl: system.endpoints.gateway });
  const users = createClient(UserService, transport);
  const watch = createClient(NotificationService, transport);
  const tokens = [];
  for (let i = 0; i < Math.ceil(STREAMS / PER_USER); i++) {
    const email = `bench-${i}-${Date.now()}@example.com`;
    const password = "a long bench passphrase 4 memory";
    await users.register({ email, password });
    tokens.push((await users.login({ email, password })).accessToken);
  }
  const gw = system.services.gateway.pid;
  const nf = system.services.notifications.pid;
  await sleep(3000);
  const before = { gw: rssMb(gw), nf: rssMb(nf) };
  const ends = [];
  for (let i = 0; i < STREAMS; i++) {
    const token = tokens[Math.floor(i / PER_USER)];
    const it = watch
      .watchNotifications({}, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal })
      [Symbol.asyncIterator]();
    ends.push(it.next().catch(() => undefined));
  }
  await sleep(5000);
  const after = { gw: rssMb(gw), nf: rssMb(nf) };
  console.log(`idle WatchNotifications streams: ${STREAMS}`);
  console.log(`gateway RSS: ${before.gw.toFixed(1)} MB -> ${after.gw.toFixed(1)} MB`);
  console.log(`notifications RSS: ${before.nf.toFixed(1)} MB -> ${after.nf.toFixed(1)} MB`);
  console.log(`gateway per idle stream: ${(((after.gw - before.gw) * 1024) / STREAMS).toFixed(1)} KB`);
  console.log(`notifications per idle stream: ${(((after.nf - before.nf) * 1024) / STREAMS).toFixed(1)} KB`);
  abort.abort();
  await Promise.all(ends);
} finally {
  await system.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
