import { existsSync, rmSync } from "node:fs";
import { fromBinary } from "@bufbuild/protobuf";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { type Logger, NatsLink, openDatabase, type StreamSpec } from "@taskmesh/platform";
import { AckPolicy, DeliverPolicy, NatsError, nanos } from "nats";
import { AnalyticsStore, MIGRATIONS } from "./analytics-store.js";
import { ANALYTICS_STREAMS, consumerFor, foldEvent } from "./events.js";

export interface ReplayOptions {
  /** Path of the database to create. It must not exist: a rebuild never folds into old state. */
  dbPath: string;
  /** NATS server URL(s). */
  servers: string[];
  logger: Logger;
  /** Streams replayed. Default: the ones the service consumes (TASKS, USERS). */
  streams?: readonly StreamSpec[];
  /** Fails when NATS cannot be reached, or a stream sends nothing while behind, for this long. Default 30000 ms. */
  timeoutMs?: number;
}

export interface StreamReplay {
  stream: string;
  /** The stream's last sequence when the replay of it began: it ran until it got there. */
  lastSeq: number;
  /** Messages read. */
  messages: number;
  /** Events folded (applied, stale or of a deleted user: whatever the live consumer would have done). */
  folded: number;
  /** Copies of an event id already folded (republished past JetStream's duplicate window). */
  duplicates: number;
  /** Messages that could not be decoded or folded; the live consumer dead-letters these. */
  skipped: number;
}

export interface ReplayResult {
  dbPath: string;
  generation: string;
  streams: StreamReplay[];
}

const STREAM_NOT_FOUND = 10059;

/**
 * Rebuilds the read models from scratch: replays every stream from its first message through an
 * ephemeral pull consumer (no acks) with DeliverPolicy.All into a new
 * database, folding each event exactly as the live consumers do and recording it in the inbox
 * under the durable name the service will use with this database. The replay of a stream ends
 * once it reaches the last sequence the stream had when it began ("caught up"); events published
 * after that are read by the service itself when it is started on the new database: its durable
 * consumers for this generation start at the beginning of each stream and the inbox skips what
 * the rebuild already folded.
 */
export async function replay(opts: ReplayOptions): Promise<ReplayResult> {
  if (existsSync(opts.dbPath)) throw new Error(`${opts.dbPath} exists; the rebuild writes a fresh database only`);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const link = new NatsLink({ servers: opts.servers, name: "analytics-rebuild", logger: opts.logger });
  const db = openDatabase(opts.dbPath, MIGRATIONS);
  let complete = false;
  try {
    const store = new AnalyticsStore(db);
    const seen = db.prepare("SELECT 1 FROM inbox WHERE consumer = ? AND event_id = ?").pluck();
    const record = db.prepare(
      "INSERT INTO inbox (consumer, event_id, subject, processed_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    await within(link.connection(), timeoutMs, "connecting to NATS");
    const jsm = await link.jetstreamManager();
    const js = await link.jetstream();
    const results: StreamReplay[] = [];
    for (const stream of opts.streams ?? ANALYTICS_STREAMS) {
      const durable = consumerFor(stream, store.generation).durable;
      const r: StreamReplay = { stream: stream.name, lastSeq: 0, messages: 0, folded: 0, duplicates: 0, skipped: 0 };
      results.push(r);
      let state: { messages: number; last_seq: number };
      try {
        state = (await jsm.streams.info(stream.name)).state;
      } catch (err) {
        if (err instanceof NatsError && err.api_error?.err_code === STREAM_NOT_FOUND) continue; // nothing published yet
        throw err;
      }
      r.lastSeq = state.last_seq;
      if (state.messages === 0) continue;
      // An ephemeral pull consumer without acks (what an ordered consumer is; nats.js's own ordered
      // consumer does not deliver against nats-server 2.9), removed by the server once idle.
      const ephemeral = await jsm.consumers.add(stream.name, {
        ack_policy: AckPolicy.None,
        deliver_policy: DeliverPolicy.All,
        inactive_threshold: nanos(Math.max(timeoutMs, 60_000)),
        mem_storage: true,
      });
      const consumer = await js.consumers.get(stream.name, ephemeral.name);
      const log = opts.logger.child({ stream: stream.name });
      let caughtUp = false;
      let idleSince: number | undefined;
      while (!caughtUp) {
        const batch = await consumer.fetch({ max_messages: 500, expires: Math.min(timeoutMs, 5000) });
        let got = 0;
        for await (const msg of batch) {
          got++;
          r.messages++;
          const data = msg.data;
          let event: Envelope | undefined;
          try {
            event = fromBinary(EnvelopeSchema, data);
            if (!event.id) throw new Error("envelope has no id");
          } catch (err) {
            r.skipped++;
            log.warn({ err, seq: msg.seq }, "undecodable message skipped");
          }
          if (event) {
            const e = event;
            try {
              const fresh = db.transaction(() => {
                if (seen.get(durable, e.id)) return false;
                record.run(durable, e.id, msg.subject, new Date().toISOString());
                foldEvent(store, e);
                return true;
              })();
              if (fresh) r.folded++;
              else r.duplicates++;
            } catch (err) {
              // Rolled back, like the live consumer's transaction before it dead-letters the event.
              r.skipped++;
              log.warn({ err, seq: msg.seq, eventId: e.id }, "event could not be folded; skipped");
            }
          }
          if (msg.seq >= r.lastSeq || msg.info.pending === 0) {
            caughtUp = true;
            break;
          }
        }
        if (got > 0) idleSince = undefined;
        else if (!caughtUp) {
          // Still behind the last sequence, yet a whole fetch window brought nothing.
          idleSince ??= Date.now();
          if (Date.now() - idleSince > timeoutMs) {
            throw new Error(`stream ${stream.name} delivered nothing for ${timeoutMs} ms at message ${r.messages}`);
          }
        }
      }
      await jsm.consumers.delete(stream.name, ephemeral.name).catch(() => {}); // else it expires on its own
      log.info({ ...r }, "stream replayed");
    }
    complete = true;
    return { dbPath: opts.dbPath, generation: store.generation, streams: results };
  } finally {
    db.close();
    await link.close();
    // A half-built database must not be mistaken for a rebuilt one (nor block the next attempt).
    if (!complete) for (const suffix of ["", "-wal", "-shm"]) rmSync(`${opts.dbPath}${suffix}`, { force: true });
  }
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
