// Load loops for the benchmark: closed loop (N workers, each sends its next call when the last
// answered) and open loop (calls started on a fixed schedule, whatever the answers do), with
// latencies in an HDR histogram (node:perf_hooks createHistogram, nanoseconds).
import { createHistogram, performance } from "node:perf_hooks";

/** Percentiles in ms from a perf_hooks histogram of nanoseconds. */
export function summary(h) {
  const ms = (ns) => Math.round(ns / 1e4) / 100;
  return {
    count: h.count,
    p50: ms(h.percentile(50)),
    p99: ms(h.percentile(99)),
    p999: ms(h.percentile(99.9)),
    max: ms(h.max),
  };
}

/**
 * Runs `call` from `concurrency` workers for `durationMs` (after `warmupMs` not recorded). Returns
 * calls/s, latency percentiles (ms) and errors by message. A failed call counts as an error, not
 * as a latency.
 */
export async function closedLoop(call, { concurrency, durationMs, warmupMs = 300 }) {
  const h = createHistogram({ lowest: 1, highest: 60e9, figures: 3 });
  const errors = {};
  let recording = false;
  let stop = false;
  let done = 0;
  const worker = async (w) => {
    let i = 0;
    while (!stop) {
      const t0 = performance.now();
      try {
        await call(w, i++);
        if (recording) {
          h.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)));
          done++;
        }
      } catch (err) {
        if (recording) {
          const k = String(err?.code ?? err?.message ?? err).slice(0, 80);
          errors[k] = (errors[k] ?? 0) + 1;
        }
      }
    }
  };
  const workers = Array.from({ length: concurrency }, (_, w) => worker(w));
  await new Promise((r) => setTimeout(r, warmupMs));
  recording = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, durationMs));
  recording = false;
  const elapsed = (performance.now() - t0) / 1000;
  stop = true;
  await Promise.all(workers);
  return { rate: Math.round(done / elapsed), concurrency, ...summary(h), errors };
}

/**
 * Starts `call(i)` `rate` times per second for `durationMs` (open loop: a slow answer does not
 * slow the schedule). Resolves once every call has settled, with the achieved start rate and errors.
 */
export async function openLoop(call, { rate, durationMs }) {
  const total = Math.max(1, Math.round((rate * durationMs) / 1000));
  const errors = {};
  const pending = [];
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      Promise.resolve()
        .then(() => call(i))
        .catch((err) => {
          const k = String(err?.code ?? err?.message ?? err).slice(0, 80);
          errors[k] = (errors[k] ?? 0) + 1;
        }),
    );
  }
  const sent = (performance.now() - t0) / 1000;
  await Promise.all(pending);
  return { sentRate: Math.round(total / sent), total, errors };
}
