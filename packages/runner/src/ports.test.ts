import { createServer, type Server } from "node:net";
import { describe, expect, it } from "vitest";
import { distinctFreePorts, ephemeralPortRange } from "./ports.js";

const listenAnyPort = () =>
  new Promise<Server>((resolve) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });

describe("distinctFreePorts", () => {
  it("picks distinct ports outside the range the OS hands to listen(0) and outgoing connections", async () => {
    const [low, high] = ephemeralPortRange();
    expect(low).toBeLessThan(high);
    const ports = await distinctFreePorts(40);
    expect(new Set(ports).size).toBe(40);
    for (const p of ports) expect(p < low || p > high, `${p} is in ${low}..${high}`).toBe(true);
  });

  it("so the OS never gives a picked port to another listen(0) before the child binds it", async () => {
    const picked = new Set(await distinctFreePorts(20));
    // What another test on this machine does between our pick and the child's bind.
    const others = await Promise.all(Array.from({ length: 200 }, listenAnyPort));
    try {
      const taken = others.map((s) => (s.address() as { port: number }).port).filter((p) => picked.has(p));
      expect(taken).toEqual([]);
    } finally {
      await Promise.all(others.map((s) => new Promise((r) => s.close(r))));
    }
  });
});
