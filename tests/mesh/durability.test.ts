// Broker durability in the rendered overlays (issue 18): prod fsyncs JetStream writes before the
// PubAck and replicates them three ways; dev runs one lazily-fsyncing node.
import { describe, expect, it } from "vitest";
import type { Resource } from "./lib/kustomize.js";
import { renderOverlay } from "./lib/overlays.js";

function natsConf(resources: Resource[]): string {
  const cm = resources.find((r) => r.kind === "ConfigMap" && r.metadata.name === "nats-config") as
    | (Resource & { data?: Record<string, string> })
    | undefined;
  const conf = cm?.data?.["nats.conf"];
  if (!conf) throw new Error("no nats-config ConfigMap with nats.conf in the rendered overlay");
  return conf;
}

function jetstreamBlock(conf: string): string {
  const m = /jetstream \{([^}]*)\}/.exec(conf);
  if (!m?.[1]) throw new Error(`nats.conf has no jetstream block:\n${conf}`);
  return m[1];
}

function natsImage(resources: Resource[]): string {
  const sts = resources.find((r) => r.kind === "StatefulSet" && r.metadata.name === "nats") as
    | (Resource & { spec: { replicas?: number; template: { spec: { containers: { image: string }[] } } } })
    | undefined;
  const image = sts?.spec.template.spec.containers[0]?.image;
  if (!image) throw new Error("no nats StatefulSet in the rendered overlay");
  return image;
}

describe("JetStream durability", () => {
  it("prod: sync_interval always (fsync before every PubAck) on a 3-node cluster, with a nats-server that knows it", () => {
    const prod = renderOverlay("prod");
    expect(jetstreamBlock(natsConf(prod))).toMatch(/^\s*sync_interval: always\s*$/m);
    expect(natsConf(prod)).toMatch(/cluster \{/);
    const sts = prod.find((r) => r.kind === "StatefulSet" && r.metadata.name === "nats") as unknown as {
      spec: { replicas: number };
    };
    expect(sts.spec.replicas).toBe(3);
    // sync_interval exists from nats-server 2.10 on.
    const [major, minor] = (/nats:(\d+)\.(\d+)/.exec(natsImage(prod)) ?? []).slice(1).map(Number);
    expect(major === 2 && (minor ?? 0) >= 10).toBe(true);
  });

  it("dev: one node with the default (lazy) fsync, to keep local writes fast", () => {
    expect(jetstreamBlock(natsConf(renderOverlay("dev")))).not.toMatch(/sync_interval/);
  });
});
