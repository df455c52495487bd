import { createHash } from "node:crypto";
import { invalid } from "./task-rules.js";

/** Where the previous page ended: the sort key (due sort value, id) of its last task. */
export interface Cursor {
  dueSort: number;
  id: string;
}

/** Where a page in manual order (TASK_ORDER_MANUAL) ended: the last task's (rank, id). */
export interface ManualCursor {
  rank: string;
  id: string;
}

/** The filters a page token is valid for; a token is refused under other filters or another user. */
export interface ListFilter {
  userId: string;
  status: string | null;
  /** Absent in tokens issued before the priority filter existed; those stay valid without it. */
  priority?: number | null;
  dueAfterMs: number | null;
  dueBeforeMs: number | null;
  /** The filters and order added with projects and labels; absent/null/false leaves the fingerprint as before. */
  projectId?: string | null;
  labelId?: string | null;
  includeArchived?: boolean;
  manual?: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Opaque cursor tokens (AIP-158): base64url of a small JSON object holding the last row's sort
 * key and a fingerprint of the filters. A keyset cursor instead of an offset keeps pages stable
 * while tasks are added or removed mid-walk: no row before the cursor is seen twice or skipped.
 * The token is not signed: it only names a position in the caller's own tasks, and the query
 * is always scoped to the caller, so a forged token can reveal nothing.
 */
export function encodePageToken(cursor: Cursor | ManualCursor, filter: ListFilter): string {
  const key = "rank" in cursor ? { v: 2, r: cursor.rank } : { v: 1, k: cursor.dueSort };
  return Buffer.from(JSON.stringify({ ...key, i: cursor.id, f: fingerprint(filter) })).toString("base64url");
}

/** decodePageToken for a manual-order listing: the token must carry a rank (v 2). */
export function decodeManualPageToken(token: string, filter: ListFilter): ManualCursor {
  const p = parseToken(token) as { v?: unknown; r?: unknown; i?: unknown; f?: unknown };
  if (p.v !== 2 || typeof p.r !== "string" || !/^[0-9A-Za-z]{1,100}$/.test(p.r) || typeof p.i !== "string")
    throw invalid("page_token", "malformed; pass the next_page_token of the previous page unchanged");
  checkToken(p, filter);
  return { rank: p.r, id: p.i };
}

function parseToken(token: string): object {
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(token)) throw new Error("not base64url");
    const parsed: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (typeof parsed !== "object" || parsed === null) throw new Error("not an object");
    return parsed;
  } catch {
    throw invalid("page_token", "malformed; pass the next_page_token of the previous page unchanged");
  }
}

function checkToken(p: { i?: unknown; f?: unknown }, filter: ListFilter): void {
  if (typeof p.i !== "string" || !UUID.test(p.i) || typeof p.f !== "string")
    throw invalid("page_token", "malformed; pass the next_page_token of the previous page unchanged");
  if (p.f !== fingerprint(filter))
    throw invalid("page_token", "was issued for different filters; repeat the filters of the first page");
}

/** The cursor in `token`, or INVALID_ARGUMENT naming page_token when it is malformed or for other filters. */
export function decodePageToken(token: string, filter: ListFilter): Cursor {
  let parsed: unknown;
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(token)) throw new Error("not base64url");
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalid("page_token", "malformed; pass the next_page_token of the previous page unchanged");
  }
  const p = parsed as { v?: unknown; k?: unknown; i?: unknown; f?: unknown } | null;
  if (
    typeof p !== "object" ||
    p === null ||
    p.v !== 1 ||
    typeof p.k !== "number" ||
    !Number.isSafeInteger(p.k) ||
    typeof p.i !== "string" ||
    !UUID.test(p.i) ||
    typeof p.f !== "string"
  )
    throw invalid("page_token", "malformed; pass the next_page_token of the previous page unchanged");
  if (p.f !== fingerprint(filter))
    throw invalid("page_token", "was issued for different filters; repeat the filters of the first page");
  return { dueSort: p.k, id: p.i };
}

function fingerprint(f: ListFilter): string {
  return createHash("sha256")
    .update(
      JSON.stringify([
        f.userId,
        f.status,
        f.dueAfterMs,
        f.dueBeforeMs,
        ...(f.priority != null ? [f.priority] : []),
        // Added later: only when set, so tokens issued before stay valid.
        ...(f.projectId || f.labelId || f.includeArchived || f.manual
          ? [{ p: f.projectId ?? null, l: f.labelId ?? null, a: !!f.includeArchived, m: !!f.manual }]
          : []),
      ]),
    )
    .digest("base64url")
    .slice(0, 16);
}
