import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { decodeManualPageToken, decodePageToken, encodePageToken, type ListFilter } from "./page-token.js";

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

  it("carry a rank in manual order, valid only for the manual listing with the same project and label", () => {
    const manual: ListFilter = { ...filter, projectId: crypto.randomUUID(), labelId: null, manual: true };
    const at = { rank: "a0V", id: crypto.randomUUID() };
    const token = encodePageToken(at, manual);
    expect(decodeManualPageToken(token, manual)).toEqual(at);
    for (const [other, decode] of [
      [{ ...manual, projectId: crypto.randomUUID() }, decodeManualPageToken],
      [{ ...manual, labelId: crypto.randomUUID() }, decodeManualPageToken],
      [{ ...manual, includeArchived: true }, decodeManualPageToken],
      [{ ...manual, manual: false }, decodePageToken],
    ] as const) {
      const [c, msg] = code(() => decode(token, other));
      expect([c, msg.startsWith("page_token: ")]).toEqual([Code.InvalidArgument, true]);
    }
    // A due-order token is no manual-order token, and a rank with other characters is refused.
    expect(code(() => decodeManualPageToken(encodePageToken(cursor, manual), manual))[0]).toBe(Code.InvalidArgument);
    const odd = Buffer.from(JSON.stringify({ v: 2, r: "a'--", i: at.id, f: "x" })).toString("base64url");
    expect(code(() => decodeManualPageToken(odd, manual))[1]).toMatch(/^page_token: malformed/);
  });

  it("issued before projects existed stay valid when no project, label, archive or order option is set", () => {
    const token = encodePageToken(cursor, filter);
    expect(
      decodePageToken(token, { ...filter, projectId: null, labelId: null, includeArchived: false, manual: false }),
    ).toEqual(cursor);
  });
});
