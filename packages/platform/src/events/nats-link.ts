import { connect, Events, type JetStreamClient, type JetStreamManager, type NatsConnection } from "nats";
import type { Logger } from "../log/logger.js";
import { type BackoffOptions, backoffDelay, sleep } from "./backoff.js";

export interface NatsLinkOptions {
  /** Server URL(s), e.g. `nats://127.0.0.1:4222` (NATS_URL). */
  servers: string | string[];
  /** Client name the server shows for this connection: the service name. */
  name: string;
  logger: Logger;
  /** Wait between reconnect attempts once connected (reconnection never gives up). @default 1000 */
  reconnectTimeWaitMs?: number;
  /** Timeout of JetStream API requests and PubAcks, ms. @default 5000 */
  timeoutMs?: number;
  /** Backoff between attempts of the first connection (before nats.js's own reconnect takes over). @default { initialMs: 250, maxMs: 5000 } */
  firstConnectBackoff?: BackoffOptions;
}

/** The defaults of NatsLinkOptions, resolved once in the constructor. */
export const NATS_LINK_DEFAULTS: Readonly<
  Required<Pick<NatsLinkOptions, "reconnectTimeWaitMs" | "timeoutMs" | "firstConnectBackoff">>
> = {
  reconnectTimeWaitMs: 1000,
  timeoutMs: 5000,
  firstConnectBackoff: { initialMs: 250, maxMs: 5000 },
};

/**
 * One NATS connection per process, kept alive for the life of the service.
 *
 * The link never blocks start-up and never gives up: the first connection is retried in the
 * background (with capped backoff) and later disconnections are healed by nats.js's own reconnect
 * (`maxReconnectAttempts: -1`). While NATS is away the service keeps working: producers' events
 * wait in the outbox and `connected` (see `natsReady`) reports the state to the health check.
 */
export class NatsLink {
  readonly #opts: NatsLinkOptions & typeof NATS_LINK_DEFAULTS;
  readonly #log: Logger;
  readonly #closing = new AbortController();
  /** One-shot waiters of whenConnected(). */
  readonly #waiters = new Set<() => void>();
  /** Persistent onConnect() listeners. */
  readonly #listeners = new Set<() => void>();
  readonly #first: Promise<NatsConnection>;
  #nc: NatsConnection | undefined;
  #connected = false;

  constructor(opts: NatsLinkOptions) {
    this.#opts = { ...NATS_LINK_DEFAULTS, ...opts };
    this.#log = opts.logger.child({ component: "nats" });
    this.#first = this.#connectLoop();
    // A close() before the first connection rejects #first; nobody has to be waiting for it.
    this.#first.catch(() => {});
  }

  /** True while the connection to NATS is up. */
  get connected(): boolean {
    return this.#connected;
  }

  /** The connection, once it has been established (rejects if the link is closed first). */
  connection(): Promise<NatsConnection> {
    return this.#first;
  }

  /** A JetStream client (publish, consumers) on the connection, once established. */
  async jetstream(): Promise<JetStreamClient> {
    return (await this.#first).jetstream({ timeout: this.#opts.timeoutMs });
  }

  /** A JetStream manager (streams, consumers) on the connection, once established. */
  async jetstreamManager(): Promise<JetStreamManager> {
    return await (await this.#first).jetstreamManager({ timeout: this.#opts.timeoutMs });
  }

  /** Resolves when the link is connected (at once if it is), or when `signal` aborts or the link closes. */
  whenConnected(signal?: AbortSignal): Promise<void> {
    if (this.#connected || signal?.aborted || this.#closing.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#waiters.delete(done);
        signal?.removeEventListener("abort", done);
        this.#closing.signal.removeEventListener("abort", done);
        resolve();
      };
      this.#waiters.add(done);
      signal?.addEventListener("abort", done, { once: true });
      this.#closing.signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Calls `listener` every time the link (re)connects. Returns an unsubscribe function. */
  onConnect(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Drains subscriptions and closes the connection (call after consumers and relays have stopped). */
  async close(): Promise<void> {
    this.#closing.abort();
    this.#setConnected(false);
    const nc = this.#nc;
    if (!nc || nc.isClosed()) return;
    // drain() flushes pending acks and publishes; it can wait on a connection that is reconnecting,
    // so it gets a bounded time before the connection is simply closed.
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      nc.drain().then(
        () => true,
        () => false,
      ),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), 5000);
      }),
    ]);
    clearTimeout(timer);
    if (!drained && !nc.isClosed()) await nc.close();
  }

  #setConnected(up: boolean): void {
    if (up === this.#connected) return;
    this.#connected = up;
    if (!up) return;
    for (const w of [...this.#waiters]) w();
    for (const l of [...this.#listeners]) l();
  }

  async #connectLoop(): Promise<NatsConnection> {
    for (let attempt = 1; ; attempt++) {
      if (this.#closing.signal.aborted) throw new Error("NATS link closed before it connected");
      try {
        const nc = await connect({
          servers: this.#opts.servers,
          name: this.#opts.name,
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: this.#opts.reconnectTimeWaitMs,
          timeout: 2000,
        });
        if (this.#closing.signal.aborted) {
          await nc.close();
          throw new Error("NATS link closed before it connected");
        }
        this.#nc = nc;
        this.#log.info({ server: nc.getServer() }, "connected to NATS");
        void this.#watch(nc);
        this.#setConnected(true);
        return nc;
      } catch (err) {
        if (this.#closing.signal.aborted) throw new Error("NATS link closed before it connected", { cause: err });
        const delay = backoffDelay(attempt, this.#opts.firstConnectBackoff);
        if (attempt === 1 || attempt % 10 === 0) {
          this.#log.warn({ err, attempt, retryInMs: delay }, "NATS not reachable yet; retrying");
        }
        await sleep(delay, this.#closing.signal);
      }
    }
  }

  async #watch(nc: NatsConnection): Promise<void> {
    void nc.closed().then(() => this.#setConnected(false));
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect) {
        this.#log.warn({ server: s.data }, "disconnected from NATS; reconnecting");
        this.#setConnected(false);
      } else if (s.type === Events.Reconnect) {
        this.#log.info({ server: s.data }, "reconnected to NATS");
        this.#setConnected(true);
      } else if (s.type === Events.Error) {
        this.#log.warn({ error: s.data }, "NATS async error");
      }
    }
  }
}

/** Readiness of the NATS dependency, for the gRPC health check: true while connected. */
export function natsReady(link: NatsLink): boolean {
  return link.connected;
}
