// This disk's commit floor: how many WAL-like commits (append a few pages, fdatasync) it takes per
// second, from 1 writer and from several at once (each its own file, as each service has its own
// database), with latency percentiles. The fsyncs run on the libuv pool (fs.promises), so writers
// overlap the way separate processes do.
//   node scripts/bench/fsync-rate.mjs [--duration 3000] [--writers 1,2,4] [--bytes 8192]
import { mkdtempSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { createHistogram, performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { summary } from "./measure.mjs";

const { values: args } = parseArgs({
  options: { duration: { type: "string" }, writers: { type: "string" }, bytes: { type: "string" } },
});
const D = Number(args.duration ?? 3000);
const WRITERS = (args.writers ?? "1,2,4").split(",").map(Number);
const BYTES = Number(args.bytes ?? 8192); // two 4 KiB WAL frames: a one-row insert's page and its index's
// Files on the same disk as a data dir (the repo's), not a tmpfs.
const dir = mkdtempSync(join(process.env.FSYNC_DIR ?? join(import.meta.dirname, "../../.data"), "fsync-rate-"));
try {
  for (const n of WRITERS) {
    const h = createHistogram({ lowest: 1, highest: 60e9, figures: 3 });
    let done = 0;
    const stopAt = performance.now() + D;
    const page = Buffer.alloc(BYTES, 7);
    await Promise.all(
      Array.from({ length: n }, async (_, w) => {
        const f = await open(join(dir, `wal-${n}-${w}`), "w");
        try {
          let pos = 0;
          while (performance.now() < stopAt) {
            const t0 = performance.now();
            await f.write(page, 0, BYTES, pos);
            await f.datasync();
            h.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)));
            pos = (pos + BYTES) % (4 << 20); // a WAL restarts from its start after a checkpoint
            done++;
          }
        } finally {
          await f.close();
        }
      }),
    );
    const s = summary(h);
    console.log(
      `${n} writer(s): ${Math.round(done / (D / 1000))} commits/s in all, p50 ${s.p50} ms, p99 ${s.p99} ms, max ${s.max} ms`,
    );
  }
  console.log(
    `load ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
