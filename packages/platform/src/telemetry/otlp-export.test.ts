// OTLP export to a receiver over real HTTP (its own file: one telemetry per process).
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { SpanKind, trace } from "@opentelemetry/api";
import { AlwaysOnSampler } from "@opentelemetry/sdk-trace-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type OtlpReceiver, startOtlpReceiver } from "../testing/otlp-receiver.js";
import { startTelemetry } from "./telemetry.js";

let receiver: OtlpReceiver;
beforeAll(async () => {
  receiver = await startOtlpReceiver();
});
afterAll(async () => {
  await receiver.close();
});

/** Starts telemetry with `protocol`, ends one span in a child span, flushes, shuts down; the ids. */
async function exportOne(protocol: "http/json" | "http/protobuf", name: string) {
  const t = await startTelemetry({
    serviceName: "otlp-test",
    serviceVersion: "9.9.9",
    otlpEndpoint: `${receiver.url}/`,
    otlpProtocol: protocol,
    sampler: new AlwaysOnSampler(),
  });
  expect(t.tracesTo).toBe(`OTLP ${receiver.url}/v1/traces${protocol === "http/json" ? " (json)" : ""}`);
  const tracer = trace.getTracer("otlp-test");
  const ids = tracer.startActiveSpan(`${name} parent`, (parent) => {
    const child = tracer.startSpan(`${name} child`, { kind: SpanKind.CLIENT, attributes: { n: 7 } });
    child.end();
    parent.end();
    return {
      traceId: parent.spanContext().traceId,
      parent: parent.spanContext().spanId,
      child: child.spanContext().spanId,
    };
  });
  await t.shutdown(); // flushes the batch
  return ids;
}

describe("OTLP export", () => {
  it("sends spans as OTLP/HTTP JSON with service.name and parent links when the protocol is http/json", async () => {
    const ids = await exportOne("http/json", "json");
    const got = receiver.spans().filter((s) => s.traceId === ids.traceId);
    expect(got.map((s) => [s.service, s.name, s.spanId, s.parentSpanId, s.kind]).sort()).toEqual(
      [
        ["otlp-test", "json child", ids.child, ids.parent, 3],
        ["otlp-test", "json parent", ids.parent, "", 1],
      ].sort(),
    );
    expect(got.find((s) => s.name === "json child")?.attributes).toEqual({ n: 7 });
  });

  it("sends protobuf by default (http/protobuf), carrying the span names", async () => {
    const before = receiver.requests().length;
    await exportOne("http/protobuf", "proto");
    const sent = receiver.requests().slice(before);
    expect(sent.map((r) => r.contentType)).toEqual(["application/x-protobuf"]);
    expect(sent[0]?.body.includes(Buffer.from("proto child"))).toBe(true);
  });

  it("stops on a metrics port in use, naming METRICS_PORT, and leaves nothing registered", async () => {
    const busy = createServer();
    const port = await new Promise<number>((r) =>
      busy.listen(0, "127.0.0.1", () => r((busy.address() as AddressInfo).port)),
    );
    try {
      await expect(startTelemetry({ serviceName: "x", metricsPort: port })).rejects.toThrow(
        new RegExp(`METRICS_PORT: cannot listen on 127\\.0\\.0\\.1:${port} \\(in use\\)`),
      );
      // Nothing half-started: telemetry starts cleanly afterwards, and its spans are exported.
      const ids = await exportOne("http/json", "after refusal");
      expect(receiver.spans().some((s) => s.spanId === ids.child)).toBe(true);
    } finally {
      busy.close();
    }
  });

  it("refuses an OTLP protocol it cannot speak, naming the variable", async () => {
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = "grpc";
    try {
      await expect(startTelemetry({ serviceName: "x" })).rejects.toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL.*http\/json/);
    } finally {
      delete process.env.OTEL_EXPORTER_OTLP_PROTOCOL;
    }
  });
});
