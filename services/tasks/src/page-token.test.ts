import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { decodePageToken, encodePageToken, type ListFilter } from "./page-token.js";

const filter: ListFilter = { userId: crypto.randomUUID(), status: "open", dueAfterMs: 0, dueBeforeMs: null };
const cursor = { dueSort: Number.MAX_SAFE_INTEGER, id: crypto.randomUUID() };

function code(fn: () => unknown): [Code | undefined, string] {
  try {
    fn();
    return [undefined, ""];
  } catch (e) {
    return e instanceof ConnectError ? [e.code, e.rawMessage] : [undefined, String(e)];
  }
}

describe("page tokens", () => {
  it("round-trip the cursor exactly, as URL-safe text", () => {
    const token = encodePageToken(cursor, filter);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodePageToken(token, filter)).toEqual(cursor);
  });

  it("are refused under other filters or another user", () => {
    const token = encodePageToken(cursor, filter);
    for (const other of [
      { ...filter, status: null },
      { ...filter, dueAfterMs: 1 },
      { ...filter, dueBeforeMs: 5 },
      { ...filter, userId: crypto.randomUUID() },
    ]) {
      const [c, msg] = code(() => decodePageToken(token, other));
      expect(c).toBe(Code.InvalidArgument);
      expect(msg).toMatch(/^page_token: /);
    }
  });

  it.each([
    ["not base64url", "a+b/c="],
    ["not JSON", Buffer.from("hello").toString("base64url")],
    ["JSON null", Buffer.from("null").toString("base64url")],
    ["a wrong version", Buffer.from(JSON.stringify({ v: 2, k: 1, i: cursor.id, f: "x" })).toString("base64url")],
    ["a non-integer key", Buffer.from(JSON.stringify({ v: 1, k: 1.5, i: cursor.id, f: "x" })).toString("base64url")],
    ["a non-uuid id", Buffer.from(JSON.stringify({ v: 1, k: 1, i: "x' OR 1=1", f: "x" })).toString("base64url")],
  ])("refuse %s", (_, token) => {
    const [c, msg] = code(() => decodePageToken(token, filter));
    expect(c).toBe(Code.InvalidArgument);
    expect(msg).toMatch(/^page_token: malformed/);
  });
});
