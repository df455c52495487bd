import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/** Throws, naming the owner and how to pick another port, when a port is taken on 127.0.0.1. */
export async function assertPortsFree(ports: ReadonlyArray<{ port: number; owner: string }>): Promise<void> {
  for (const { port, owner } of ports) {
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once("error", () => resolve(false));
      srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
    });
    if (!free) {
      throw new Error(
        `port ${port} (${owner}) is already in use on 127.0.0.1: is taskmesh already running? ` +
          "Stop the other process or choose other ports.",
      );
    }
  }
}

/**
 * The range the OS draws from for `listen(0)` and for the local end of outgoing connections
 * (Linux: /proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default; elsewhere IANA's
 * 49152-65535, which macOS and Windows use).
 */
export function ephemeralPortRange(): [number, number] {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low as number, high as number];
  } catch {
    // Not Linux: IANA's dynamic range.
  }
  return [49152, 65535];
}

/** Above the well-known and TOPOLOGY's fixed local ports (4222, 8080, 9461..). */
const LOWEST = 15000;

const bindable = (port: number) =>
  new Promise<boolean>((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });

/**
 * `count` distinct free ports for child processes to bind, chosen below the OS's ephemeral range.
 * A port picked with `listen(0)` and released is back in the pool the OS hands to every other
 * `listen(0)` and outgoing connection on the machine, so another test could take it before the
 * child binds it ("METRICS_PORT in use"); a port outside that pool is only taken by a process that
 * names it, and a random pick makes two runners naming the same one unlikely.
 */
export async function distinctFreePorts(count: number): Promise<number[]> {
  const [ephemeralLow] = ephemeralPortRange();
  const high = ephemeralLow - 1;
  if (high - LOWEST < 1000 + count) {
    throw new Error(
      `the OS's ephemeral port range starts at ${ephemeralLow}, leaving too few ports below it for free ports ` +
        `(${LOWEST}..${high}); raise net.ipv4.ip_local_port_range's lower bound or pass fixed ports`,
    );
  }
  const ports = new Set<number>();
  for (let tries = 0; ports.size < count; tries++) {
    if (tries > count * 50) throw new Error(`found only ${ports.size} of ${count} free ports in ${LOWEST}..${high}`);
    const port = LOWEST + Math.floor(Math.random() * (high - LOWEST + 1));
    if (!ports.has(port) && (await bindable(port))) ports.add(port);
  }
  return [...ports];
}
