import { Code, ConnectError } from "@connectrpc/connect";
import { NotificationChannel, type UserInternalService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import type { BreakerState, DependencyPolicy, GrpcClient, Logger } from "@taskmesh/platform";
import type { QuietWindow } from "./quiet-hours.js";

/** What routing needs from a user's preferences. */
export interface Routing {
  /** The account email ("" when unknown, e.g. in the fallback). */
  email: string;
  /** IANA zone ("" = UTC). */
  timeZone: string;
  /** The channels the user chose. */
  channels: { inApp: boolean; email: boolean; webhook: boolean; push: boolean };
  quietHours: QuietWindow | undefined;
  webhookUrl: string;
}

/**
 * What notifications does when users cannot answer: in-app only, UTC, no quiet hours. In-app
 * needs nothing from users and is always safe; email and webhook need an address users holds,
 * and guessing one would send to the wrong place. Push is off too: whether the user wants it is
 * what users did not say.
 */
export const FALLBACK_ROUTING: Readonly<Routing> = Object.freeze({
  email: "",
  timeZone: "",
  channels: Object.freeze({ inApp: true, email: false, webhook: false, push: false }),
  quietHours: undefined,
  webhookUrl: "",
});

export type Lookup =
  | { kind: "found"; routing: Routing }
  /** users did not answer (down, slow, breaker open, or an unexpected error): use FALLBACK_ROUTING. */
  | { kind: "fallback"; routing: Routing; reason: string }
  /** users says there is no such user (deleted): the event is dropped. */
  | { kind: "gone" };

export interface PreferencesStats {
  /** Lookups answered by users. */
  found: number;
  /** Lookups that fell back to FALLBACK_ROUTING. */
  fallbacks: number;
  /** Lookups for a user users does not know. */
  gone: number;
  /** Why the last fallback happened, e.g. "Unavailable: users is unavailable (circuit open), retry later". */
  lastFallback: string | undefined;
  /** The circuit breaker in front of users. */
  breaker: BreakerState;
}

/**
 * Reads a user's notification preferences from users' internal GetUserPreferences, through a
 * DependencyPolicy (timeout + circuit breaker + bulkhead). NOT_FOUND means the user is gone; any
 * other failure — users down or slow, the breaker open (fails at once, users is not called) —
 * falls back to safe defaults, logged and counted, so reminders keep arriving in-app while users
 * is away.
 */
export class PreferencesSource {
  readonly #client: GrpcClient<typeof UserInternalService>;
  readonly #policy: DependencyPolicy;
  readonly #logger: Logger;
  readonly #timeoutMs: number;
  readonly #stats: Omit<PreferencesStats, "breaker"> = { found: 0, fallbacks: 0, gone: 0, lastFallback: undefined };

  constructor(opts: {
    client: GrpcClient<typeof UserInternalService>;
    policy: DependencyPolicy;
    logger: Logger;
    /** Budget of one call. */
    timeoutMs: number;
  }) {
    this.#client = opts.client;
    this.#policy = opts.policy;
    this.#logger = opts.logger;
    this.#timeoutMs = opts.timeoutMs;
  }

  get stats(): PreferencesStats {
    return { ...this.#stats, breaker: this.#policy.state };
  }

  async lookup(userId: string): Promise<Lookup> {
    try {
      const res = await this.#policy.execute(
        (signal, budgetMs) =>
          // The trace context goes with the call from the active (consumer) span.
          this.#client.getUserPreferences({ userId }, { signal, timeoutMs: budgetMs }),
        { timeoutMs: this.#timeoutMs },
      );
      this.#stats.found++;
      const p = res.preferences;
      const channels = new Set(p?.channels ?? []);
      // "Empty means in-app only" (users.proto).
      const none = channels.size === 0;
      return {
        kind: "found",
        routing: {
          email: res.email,
          timeZone: p?.timeZone ?? "",
          channels: {
            inApp: none || channels.has(NotificationChannel.IN_APP),
            email: channels.has(NotificationChannel.EMAIL),
            webhook: channels.has(NotificationChannel.WEBHOOK),
            push: channels.has(NotificationChannel.PUSH),
          },
          quietHours: p?.quietHours
            ? { startMinute: p.quietHours.startMinute, endMinute: p.quietHours.endMinute }
            : undefined,
          webhookUrl: p?.webhookUrl ?? "",
        },
      };
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.NotFound) {
        this.#stats.gone++;
        return { kind: "gone" };
      }
      this.#stats.fallbacks++;
      const reason = `${Code[e.code]}: ${e.rawMessage}`;
      this.#stats.lastFallback = reason;
      this.#logger.warn(
        { userId, reason, breaker: this.#policy.state, fallbacks: this.#stats.fallbacks },
        "users preferences unavailable; falling back to in-app only, UTC, no quiet hours",
      );
      return { kind: "fallback", routing: { ...FALLBACK_ROUTING, channels: { ...FALLBACK_ROUTING.channels } }, reason };
    }
  }
}
