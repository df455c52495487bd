import type { Db } from "../db/database.js";
import type { Logger } from "../log/logger.js";
import type { BackoffOptions } from "./backoff.js";
import { type ConsumerStats, EventConsumer, type EventConsumerOptions } from "./consumer.js";
import type { FaultHooks } from "./fault-drill.js";
import type { InboxRetention } from "./inbox.js";
import { NatsLink, natsReady } from "./nats-link.js";
import { OutboxReconciler, type OutboxReconcilerOptions } from "./reconciler.js";
import { OutboxRelay, type OutboxRelayOptions, type RelayStats } from "./relay.js";
import { watchOutbox } from "./service-kit.js";
import type { ConsumerSpec, StreamSpec } from "./streams.js";

/** One consumer a service declares in its events.ts: what it reads and how it applies an event. */
export interface ConsumerDeclaration<R = void> {
  stream: StreamSpec;
  consumer: Omit<ConsumerSpec, "stream">;
  handler: EventConsumerOptions<R>["handler"];
  /** Commit without an fsync, ack after one (EventConsumerOptions.syncBeforeAck: databases that publish nothing). */
  syncBeforeAck?: boolean;
}

/** Consumers by the name the service's stats use (e.g. `userDeleted`). */
// biome-ignore lint/suspicious/noExplicitAny: each consumer has its own external result type.
export type ConsumerDeclarations = Record<string, ConsumerDeclaration<any>>;

export interface ServiceEventsOptions<K extends string> {
  /** Service name: the NATS connection name. */
  name: string;
  /** NATS server URLs (NATS_URL). */
  servers: string[];
  /** The service's database (outbox and inbox tables). */
  db: Db;
  logger: Logger;
  /** The gRPC server's health: the "nats" entry mirrors the link. */
  health: { setStatus(service: string, status: "SERVING" | "NOT_SERVING"): void };
  /** Streams this service publishes to through its outbox; none means no relay. @default [] */
  publishes?: readonly StreamSpec[];
  /** Consumers by name. @default {} */
  consumers?: Record<K, ConsumerDeclaration<unknown>> | ConsumerDeclarations;
  /** Ack wait and deliveries of every consumer, for tests. @default the ConsumerSpec defaults (30 s, 5) */
  consumerOverrides?: { ackWaitMs?: number; maxDeliver?: number };
  /** Delay before a transient failure is redelivered. @default { initialMs: 1000, maxMs: 60000 } (EventConsumer) */
  retryBackoff?: BackoffOptions;
  /** Relay options beyond the streams (poll interval, fault hooks). @default OutboxRelay's */
  relay?: Omit<OutboxRelayOptions, "db" | "link" | "logger" | "streams">;
  /** How often the outbox backlog is checked and logged while events wait, ms. @default 5000 */
  outboxReportIntervalMs?: number;
  /** The reconciler's pass interval and horizon (when the service publishes). @default OutboxReconciler's */
  reconcile?: Pick<OutboxReconcilerOptions, "intervalMs" | "horizonMs" | "batchSize">;
  /** How long each consumer keeps its inbox rows, and its pruning passes (INBOX_RETENTION_MS). @default InboxPruner's (7 days) */
  retention?: InboxRetention;
  /** Fault injection (TASKMESH_FAULT drills, or a test's own hooks) for the relay and the consumers. @default none */
  faults?: FaultHooks;
  /** How often the "nats" health entry is refreshed when the service publishes nothing, ms. @default 2000 */
  healthMirrorIntervalMs?: number;
  /**
   * Called each time the NATS link (re)connects: a service whose readiness covers NATS re-checks
   * it here (GrpcServer.checkReadiness), so it is seen ready at once, not at the next interval. @default none
   */
  onConnect?: () => void;
}

/** The defaults of ServiceEventsOptions, resolved once in the constructor. */
export const SERVICE_EVENTS_DEFAULTS: Readonly<
  Required<
    Pick<ServiceEventsOptions<string>, "publishes" | "consumers" | "outboxReportIntervalMs" | "healthMirrorIntervalMs">
  >
> = {
  publishes: [],
  consumers: {},
  outboxReportIntervalMs: 5000,
  healthMirrorIntervalMs: 2000,
};

const NO_CONSUMER_STATS: ConsumerStats = Object.freeze({ applied: 0, duplicates: 0, retried: 0, deadLettered: 0 });
const NO_RELAY_STATS: RelayStats = Object.freeze({ published: 0, duplicates: 0, failures: 0 });

interface Running {
  link: NatsLink;
  relay: OutboxRelay | undefined;
  reconciler: OutboxReconciler | undefined;
  consumers: Map<string, EventConsumer<unknown>>;
  stopWatch: () => void;
}

/**
 * A service's events machinery, built from what its events.ts declares: one NATS link, the
 * outbox relay (when it publishes), one durable consumer per declaration, and the "nats" health
 * entry. Nothing connects before `start()` (called by the service's `listen()`), so `build()`
 * stays free of side effects; `stop()` lets the event in hand finish, publishes what the relay
 * can in its drain time, then closes the link.
 */
export class ServiceEvents<K extends string = string> {
  readonly #opts: ServiceEventsOptions<K> & typeof SERVICE_EVENTS_DEFAULTS;
  #running: Running | undefined;
  #stopped: Promise<void> | undefined;
  #count: (() => number) | undefined;

  constructor(opts: ServiceEventsOptions<K>) {
    this.#opts = { ...SERVICE_EVENTS_DEFAULTS, ...opts };
  }

  /** Connects (in the background: start-up never waits for NATS) and starts the relay and consumers. Idempotent; a no-op after stop(). */
  start(): void {
    if (this.#running || this.#stopped) return;
    const o = this.#opts;
    const link = new NatsLink({ servers: o.servers, name: o.name, logger: o.logger });
    const relay =
      o.publishes.length > 0
        ? new OutboxRelay({
            ...o.relay,
            db: o.db,
            link,
            logger: o.logger,
            streams: o.publishes,
            ...(o.faults?.afterPubAck ? { hooks: { afterPubAck: o.faults.afterPubAck } } : {}),
          })
        : undefined;
    const consumers = new Map<string, EventConsumer<unknown>>();
    const beforeCommit = o.faults?.beforeCommit;
    for (const [key, decl] of Object.entries<ConsumerDeclaration<unknown>>(o.consumers)) {
      consumers.set(
        key,
        new EventConsumer<unknown>({
          link,
          db: o.db,
          logger: o.logger,
          stream: decl.stream,
          consumer: { ...decl.consumer, ...o.consumerOverrides },
          handler: decl.handler,
          ...(decl.syncBeforeAck ? { syncBeforeAck: true } : {}),
          ...(o.retryBackoff ? { retryBackoff: o.retryBackoff } : {}),
          ...(o.retention ? { retention: o.retention } : {}),
          ...(beforeCommit ? { hooks: { beforeCommit: (e, ctx) => beforeCommit(decl.consumer.durable, e, ctx) } } : {}),
        }),
      );
    }
    const reconciler = relay
      ? new OutboxReconciler({ ...o.reconcile, db: o.db, link, logger: o.logger, streams: o.publishes })
      : undefined;
    relay?.start();
    reconciler?.start();
    for (const c of consumers.values()) c.start();
    const stopWatch = watchOutbox({
      ...(relay ? { relay } : {}),
      link,
      health: o.health,
      logger: o.logger,
      intervalMs: relay ? o.outboxReportIntervalMs : o.healthMirrorIntervalMs,
    });
    const stopOnConnect = o.onConnect ? link.onConnect(o.onConnect) : () => {};
    this.#running = {
      link,
      relay,
      reconciler,
      consumers,
      stopWatch: () => {
        stopOnConnect();
        stopWatch();
      },
    };
  }

  /** Stops the consumers (the event in hand commits) and the relay, then closes NATS. Safe to call twice. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      const r = this.#running;
      if (!r) return;
      r.stopWatch();
      await Promise.all([...[...r.consumers.values()].map((c) => c.stop()), r.relay?.stop(), r.reconciler?.stop()]);
      await r.link.close();
    })();
    return this.#stopped;
  }

  /** Stops only the consumers, for services that must finish consuming before they stop serving. */
  async stopConsumers(): Promise<void> {
    await Promise.all([...(this.#running?.consumers.values() ?? [])].map((c) => c.stop()));
  }

  /** Events committed to the outbox and not yet acknowledged by JetStream (0 for a service that publishes nothing). */
  backlog(): number {
    if (this.#opts.publishes.length === 0) return 0;
    this.#count ??= (() => {
      const q = this.#opts.db.prepare("SELECT count(*) FROM outbox WHERE published_at IS NULL").pluck();
      return () => q.get() as number;
    })();
    return this.#count();
  }

  /** True while the NATS link is up (false before start()). */
  get natsReady(): boolean {
    return this.#running ? natsReady(this.#running.link) : false;
  }

  /** True while the NATS connection is up (false before start()). */
  get natsConnected(): boolean {
    return this.#running?.link.connected ?? false;
  }

  /** Publish counters of the relay since start() (zeros before, or without a relay). */
  get relayStats(): Readonly<RelayStats> {
    return this.#running?.relay?.stats ?? NO_RELAY_STATS;
  }

  /** Rows the reconciler checked and events it republished since start() (zeros without a relay). */
  get reconcileStats(): Readonly<{ checked: number; republished: number }> {
    return this.#running?.reconciler?.stats ?? { checked: 0, republished: 0 };
  }

  /** Runs a pruning pass of every consumer's inbox now (they also run on their own); resolves the rows deleted. */
  async pruneInboxes(): Promise<number> {
    const counts = await Promise.all([...(this.#running?.consumers.values() ?? [])].map((c) => c.pruner.prune()));
    return counts.reduce((a, b) => a + b, 0);
  }

  /** Counters of the consumer declared as `key` since start() (zeros before). */
  consumerStats(key: K): Readonly<ConsumerStats> {
    return this.#running?.consumers.get(key)?.stats ?? NO_CONSUMER_STATS;
  }
}
