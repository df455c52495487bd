import { createServer } from "node:net";
import { freePort } from "@taskmesh/platform/process";

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

/** `count` distinct free ports. */
export async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}
