import { existsSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type NatsServer, startNats } from "./nats.js";

/** A bare NATS protocol client: enough to talk to JetStream's request/reply API without a library. */
class RawNats {
  #buf = "";
  #waiters: Array<() => void> = [];
  private constructor(private readonly socket: Socket) {
    socket.on("data", (chunk) => {
      this.#buf += chunk.toString();
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  static async open(port: number): Promise<RawNats> {
    const socket = connect({ host: "127.0.0.1", port });
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const client = new RawNats(socket);
    await client.#until(/^INFO (.*)\r\n/m);
    socket.write('CONNECT {"verbose":false,"pedantic":false,"headers":false}\r\nSUB _INBOX.test 1\r\n');
    return client;
  }

  async info(): Promise<Record<string, unknown>> {
    const [, json] = await this.#until(/^INFO (.*)\r\n/m);
    return JSON.parse(json ?? "{}");
  }

  /** Request/reply on `subject`; returns the reply's JSON. */
  async request(subject: string, body: unknown): Promise<Record<string, unknown>> {
    const payload = Buffer.from(JSON.stringify(body));
    this.#buf = "";
    this.socket.write(`PUB ${subject} _INBOX.test ${payload.length}\r\n${payload}\r\n`);
    const [, size] = await this.#until(/MSG _INBOX\.test 1 (\d+)\r\n/);
    const [, json] = await this.#until(new RegExp(`MSG _INBOX\\.test 1 ${size}\\r\\n(.{${size}})\\r\\n`, "s"));
    return JSON.parse(json ?? "{}");
  }

  close() {
    this.socket.destroy();
  }

  async #until(re: RegExp): Promise<RegExpMatchArray> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const m = this.#buf.match(re);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in ${JSON.stringify(this.#buf)}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("startNats", () => {
  let nats: NatsServer | undefined;
  afterEach(async () => {
    await nats?.stop();
    nats = undefined;
  });

  it("starts nats-server with JetStream on a free loopback port", async () => {
    nats = await startNats();
    expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
    const client = await RawNats.open(nats.port);
    // INFO was consumed by open(); a fresh connection shows it again.
    client.close();
    const socket = connect({ host: "127.0.0.1", port: nats.port });
    const info = await new Promise<string>((resolve) => socket.once("data", (d) => resolve(d.toString())));
    socket.destroy();
    const json = JSON.parse(info.replace(/^INFO /, ""));
    expect(json.jetstream).toBe(true);
    expect(json.host).toBe("127.0.0.1");
  });

  it("keeps JetStream streams across a SIGKILL and restart, on the same port", async () => {
    nats = await startNats();
    const before = nats.pid;
    let client = await RawNats.open(nats.port);
    const created = await client.request("$JS.API.STREAM.CREATE.ORDERS", {
      name: "ORDERS",
      subjects: ["orders.>"],
      storage: "file",
    });
    expect(created.error).toBeUndefined();
    client.close();

    await nats.kill();
    expect(alive(before)).toBe(false);
    await nats.restart();
    expect(nats.pid).not.toBe(before);

    client = await RawNats.open(nats.port);
    const info = await client.request("$JS.API.STREAM.INFO.ORDERS", {});
    client.close();
    expect(info.error).toBeUndefined();
    expect((info.config as { name: string }).name).toBe("ORDERS");
  });

  it("stop() ends the process by PID and removes the store it created", async () => {
    nats = await startNats();
    const { pid, storeDir } = nats;
    expect(alive(pid)).toBe(true);
    await nats.stop();
    nats = undefined;
    expect(alive(pid)).toBe(false);
    expect(existsSync(storeDir)).toBe(false);
  });

  it("says how to install nats-server when it is not on PATH", async () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      await expect(startNats()).rejects.toThrow(/apt-get install -y nats-server/);
    } finally {
      process.env.PATH = path;
    }
  });
});
