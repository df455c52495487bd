import { describe, expect, it } from "vitest";
import { streamReplicas } from "./streams.js";

describe("streamReplicas", () => {
  it("defaults to one copy and takes the prod overlay's R3", () => {
    expect(streamReplicas({})).toBe(1);
    expect(streamReplicas({ NATS_STREAM_REPLICAS: "3" })).toBe(3);
  });

  it("names the variable when the value is not 1 to 5", () => {
    for (const bad of ["0", "6", "two", "1.5"]) {
      expect(() => streamReplicas({ NATS_STREAM_REPLICAS: bad })).toThrow(/NATS_STREAM_REPLICAS must be an integer/);
    }
  });
});
