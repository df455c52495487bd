import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamManager,
  NatsError,
  nanos,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "nats";

/** A JetStream stream declared in code; `ensureStreams` creates or updates it at start-up. */
export interface StreamSpec {
  /** Stream name, upper case by convention (e.g. "TASKS"). */
  name: string;
  /** Subjects captured by the stream. Subjects of different streams must not overlap. */
  subjects: readonly string[];
  description?: string;
  /**
   * Window in which JetStream drops a message whose `Nats-Msg-Id` it has already stored. It must
   * cover the longest time a relay can take between a publish and the next attempt after a crash
   * (restart + backoff); the consumers' inbox absorbs anything older. Default 120000 ms (2 minutes).
   */
  duplicateWindowMs?: number;
  /** Age after which messages are removed. Default 0: kept (analytics rebuilds by replaying from the start). */
  maxAgeMs?: number;
}

/**
 * Every stream of taskmesh: one per producing service, file storage.
 *
 * TASKS lists its subjects instead of `taskmesh.task.>` because `task.due` is published by
 * reminders (services/reminders/README.md), and JetStream refuses two streams whose subjects overlap.
 */
export const STREAMS = {
  USERS: { name: "USERS", subjects: ["taskmesh.user.>"], description: "users service events" },
  TASKS: {
    name: "TASKS",
    subjects: [
      "taskmesh.task.created",
      "taskmesh.task.updated",
      "taskmesh.task.completed",
      "taskmesh.task.deleted",
      // Projects and labels (issue 14) are owned by the tasks service too.
      "taskmesh.project.>",
      "taskmesh.label.>",
    ],
    description: "tasks service events",
  },
  REMINDERS: {
    name: "REMINDERS",
    subjects: ["taskmesh.reminder.>", "taskmesh.task.due"],
    description: "reminders service events",
  },
  NOTIFICATIONS: {
    name: "NOTIFICATIONS",
    subjects: ["taskmesh.notification.>"],
    description: "notifications service events",
  },
  DEADLETTER: {
    name: "DEADLETTER",
    subjects: ["taskmesh.deadletter.>"],
    description: "poison events, one subject per consumer: taskmesh.deadletter.<consumer>",
  },
} as const satisfies Record<string, StreamSpec>;

/** Subject prefix of the dead-letter stream; a consumer's poison events go to `<prefix>.<durable>`. */
export const DEADLETTER_SUBJECT_PREFIX = "taskmesh.deadletter";

/** A durable pull consumer declared in code; `ensureConsumer` creates or updates it. */
export interface ConsumerSpec {
  /** Stream the consumer reads. */
  stream: string;
  /** Durable name (letters, digits, `-`, `_`), e.g. "reminders-tasks". Also names its dead-letter subject. */
  durable: string;
  /** Only subjects matching this filter are delivered. Default: the whole stream. */
  filterSubject?: string;
  /** Time the server waits for an ack before redelivering. Default 30000 ms. */
  ackWaitMs?: number;
  /** Deliveries after which the consumer loop dead-letters an event. Default 5. */
  maxDeliver?: number;
  /** Unacknowledged messages the server hands out at once. Default 100. */
  maxAckPending?: number;
}

/**
 * Deliveries the *server* allows beyond `maxDeliver`. The consumer loop moves an event to the
 * dead-letter stream when delivery `maxDeliver` fails; if the process dies during that last
 * attempt, or the dead-letter publish itself fails, the server's own max_deliver would otherwise
 * drop the message silently (it only emits an advisory). The headroom gets it delivered again so
 * the loop can dead-letter it.
 */
export const DEADLETTER_HEADROOM = 3;

export const DEFAULT_ACK_WAIT_MS = 30_000;
export const DEFAULT_MAX_DELIVER = 5;

// JetStream API error codes (nats-server/server/errors.json).
const STREAM_NOT_FOUND = 10059;
const STREAM_NAME_IN_USE = 10058;
const CONSUMER_NOT_FOUND = 10014;

function apiErrorCode(err: unknown): number | undefined {
  return err instanceof NatsError ? err.api_error?.err_code : undefined;
}

function streamConfig(spec: StreamSpec): Partial<StreamConfig> & { name: string } {
  return {
    name: spec.name,
    subjects: [...spec.subjects],
    description: spec.description ?? "",
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(spec.duplicateWindowMs ?? 120_000),
    max_age: nanos(spec.maxAgeMs ?? 0),
    num_replicas: streamReplicas(),
  };
}

/**
 * How many copies of each stream JetStream keeps: NATS_STREAM_REPLICAS (1–5, default 1). The prod
 * overlay runs a 3-node NATS cluster and sets 3 (R3), so a stream survives the loss of a node.
 * Read when streams are ensured at start-up, so a bad value stops the service with its name.
 */
export function streamReplicas(env: Record<string, string | undefined> = process.env): number {
  const raw = env.NATS_STREAM_REPLICAS;
  if (raw === undefined || raw === "") return 1;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 5) {
    throw new Error(`NATS_STREAM_REPLICAS must be an integer from 1 to 5, got "${raw}"`);
  }
  return n;
}

/**
 * Creates each stream, or updates it to the declared configuration when it exists. Safe to call
 * from every instance at every start (two instances racing to create both succeed).
 */
export async function ensureStreams(jsm: JetStreamManager, specs: readonly StreamSpec[]): Promise<void> {
  for (const spec of specs) {
    const config = streamConfig(spec);
    let existing: StreamConfig | undefined;
    try {
      existing = (await jsm.streams.info(spec.name)).config;
    } catch (err) {
      if (apiErrorCode(err) !== STREAM_NOT_FOUND) throw err;
    }
    if (!existing) {
      try {
        await jsm.streams.add(config);
        continue;
      } catch (err) {
        if (apiErrorCode(err) !== STREAM_NAME_IN_USE) throw err;
        existing = (await jsm.streams.info(spec.name)).config;
      }
    }
    if (existing.storage !== StorageType.File) {
      throw new Error(
        `stream ${spec.name} exists with ${existing.storage} storage; it must be file (delete it to recreate)`,
      );
    }
    if (!sameStream(existing, config)) await jsm.streams.update(spec.name, { ...existing, ...config });
  }
}

function sameStream(a: StreamConfig, b: Partial<StreamConfig>): boolean {
  return (
    JSON.stringify([...a.subjects].sort()) === JSON.stringify([...(b.subjects ?? [])].sort()) &&
    a.duplicate_window === b.duplicate_window &&
    a.max_age === b.max_age &&
    a.num_replicas === b.num_replicas &&
    (a.description ?? "") === (b.description ?? "")
  );
}

/** Creates the durable pull consumer (explicit ack), or updates it when it exists. */
export async function ensureConsumer(jsm: JetStreamManager, spec: ConsumerSpec): Promise<void> {
  const config = {
    durable_name: spec.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(spec.ackWaitMs ?? DEFAULT_ACK_WAIT_MS),
    max_deliver: (spec.maxDeliver ?? DEFAULT_MAX_DELIVER) + DEADLETTER_HEADROOM,
    max_ack_pending: spec.maxAckPending ?? 100,
    ...(spec.filterSubject ? { filter_subject: spec.filterSubject } : {}),
  };
  try {
    const existing = (await jsm.consumers.info(spec.stream, spec.durable)).config;
    if (
      existing.ack_wait !== config.ack_wait ||
      existing.max_deliver !== config.max_deliver ||
      existing.max_ack_pending !== config.max_ack_pending ||
      (existing.filter_subject ?? "") !== (config.filter_subject ?? "")
    ) {
      await jsm.consumers.update(spec.stream, spec.durable, config);
    }
  } catch (err) {
    if (apiErrorCode(err) !== CONSUMER_NOT_FOUND) throw err;
    // add is idempotent for an identical config, so two instances starting together both succeed.
    await jsm.consumers.add(spec.stream, config);
  }
}
