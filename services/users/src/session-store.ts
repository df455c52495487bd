import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { Envelope } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { appendEvent, type Db, type Migration } from "@taskmesh/platform";

/**
 * Sessions and their refresh tokens. A session is one login; its refresh tokens form a chain
 * (the "family"): each refresh spends the current token and issues the next. A spent token
 * presented again means two parties hold the chain (a stolen token, or a replay), so the whole
 * session is revoked (OAuth 2.0 Security BCP, RFC 9700 §4.14.2, refresh token rotation).
 * Tokens are stored only as SHA-256 hashes: they carry 256 random bits, so a fast hash is enough
 * (nothing to brute-force), and a leaked database yields no usable token.
 */
export const SESSIONS_MIGRATION: Migration = {
  version: 5,
  name: "sessions and refresh tokens",
  sql: `
    CREATE TABLE sessions (
      id            TEXT PRIMARY KEY,
      user_id       TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
      user_agent    TEXT NOT NULL DEFAULT '',
      ip_address    TEXT NOT NULL DEFAULT '',
      created_at    INTEGER NOT NULL,
      last_used_at  INTEGER NOT NULL,
      expires_at    INTEGER NOT NULL,
      revoked_at    INTEGER,
      revoke_reason TEXT
    ) STRICT;
    CREATE INDEX sessions_by_user ON sessions (user_id, last_used_at DESC);
    CREATE TABLE refresh_tokens (
      token_hash  TEXT PRIMARY KEY,
      session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
      issued_at   INTEGER NOT NULL,
      spent_at    INTEGER
    ) STRICT;
    CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
  `,
};

export interface SessionLifetimes {
  /** A session not refreshed for this long expires (ms). */
  idleMs: number;
  /** A session ends this long after its login, however often it is refreshed (ms). */
  maxAgeMs: number;
}

export interface SessionRecord {
  id: string;
  userId: string;
  userAgent: string;
  ipAddress: string;
  createdAt: number;
  lastUsedAt: number;
  expiresAt: number;
  revokedAt: number | undefined;
  revokeReason: string | undefined;
}

/** What a client told us about itself (gateway-forwarded headers); "" when unknown. */
export interface ClientInfo {
  ipAddress: string;
  userAgent: string;
}

/** The outcome of presenting a refresh token. */
export type RefreshOutcome =
  | { kind: "rotated"; session: SessionRecord; refreshToken: string }
  | { kind: "unknown" }
  | { kind: "reused"; session: SessionRecord }
  | { kind: "revoked"; session: SessionRecord }
  | { kind: "expired"; session: SessionRecord };

interface Row {
  id: string;
  user_id: string;
  user_agent: string;
  ip_address: string;
  created_at: number;
  last_used_at: number;
  expires_at: number;
  revoked_at: number | null;
  revoke_reason: string | null;
}

/** Refresh tokens are 32 random bytes, base64url (43 characters). */
export function newRefreshToken(): string {
  return randomBytes(32).toString("base64url");
}

export function hashRefreshToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** SQL for sessions, in the users database; writes that publish an event do it in the same transaction. */
export class SessionStore {
  readonly #db: Db;
  readonly #lifetimes: SessionLifetimes;
  readonly #sql;

  constructor(db: Db, lifetimes: SessionLifetimes) {
    this.#db = db;
    this.#lifetimes = lifetimes;
    this.#sql = {
      insertSession: db.prepare(
        `INSERT INTO sessions (id, user_id, user_agent, ip_address, created_at, last_used_at, expires_at)
         VALUES (@id, @userId, @userAgent, @ipAddress, @createdAt, @lastUsedAt, @expiresAt)`,
      ),
      insertToken: db.prepare<[string, string, number]>(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES (?, ?, ?)",
      ),
      tokenByHash: db.prepare<[string], { session_id: string; spent_at: number | null }>(
        "SELECT session_id, spent_at FROM refresh_tokens WHERE token_hash = ?",
      ),
      spend: db.prepare<[number, string]>(
        "UPDATE refresh_tokens SET spent_at = ? WHERE token_hash = ? AND spent_at IS NULL",
      ),
      byId: db.prepare<[string], Row>("SELECT * FROM sessions WHERE id = ?"),
      touch: db.prepare<[number, number, string]>("UPDATE sessions SET last_used_at = ?, expires_at = ? WHERE id = ?"),
      revoke: db.prepare<[number, string, string]>(
        "UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL",
      ),
      active: db.prepare<[string, number], Row>(
        `SELECT * FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?
         ORDER BY last_used_at DESC, id LIMIT 100`,
      ),
      deleteForUser: db.prepare<[string]>("DELETE FROM sessions WHERE user_id = ?"),
    };
  }

  /** Starts a session for `userId` with its first refresh token (and `event` of it, if any, in the same transaction). */
  create(
    userId: string,
    client: ClientInfo,
    now: number,
    event?: (s: SessionRecord) => Envelope,
  ): { session: SessionRecord; refreshToken: string } {
    const session: SessionRecord = {
      id: randomUUID(),
      userId,
      userAgent: client.userAgent,
      ipAddress: client.ipAddress,
      createdAt: now,
      lastUsedAt: now,
      expiresAt: now + Math.min(this.#lifetimes.idleMs, this.#lifetimes.maxAgeMs),
      revokedAt: undefined,
      revokeReason: undefined,
    };
    const refreshToken = newRefreshToken();
    this.#db.transaction(() => {
      this.#sql.insertSession.run(session);
      this.#sql.insertToken.run(hashRefreshToken(refreshToken), session.id, now);
      if (event) appendEvent(this.#db, event(session));
    })();
    return { session, refreshToken };
  }

  /**
   * Spends `token` and issues the next one of its session, extending the session's idle expiry
   * (never past its maximum age). A spent token revokes the session (reason "refresh_reused") and
   * `onReuse` makes the event committed with that revocation. One transaction, so two concurrent
   * refreshes with one token cannot both rotate: the second sees it spent.
   */
  refresh(token: string, now: number, onReuse: (s: SessionRecord) => Envelope): RefreshOutcome {
    return this.#db.transaction((): RefreshOutcome => {
      const hash = hashRefreshToken(token);
      const t = this.#sql.tokenByHash.get(hash);
      if (!t) return { kind: "unknown" };
      const row = this.#sql.byId.get(t.session_id);
      if (!row) return { kind: "unknown" };
      const session = toSession(row);
      if (session.revokedAt !== undefined) return { kind: "revoked", session };
      if (t.spent_at !== null) {
        this.#sql.revoke.run(now, "refresh_reused", session.id);
        appendEvent(this.#db, onReuse(session));
        return { kind: "reused", session: { ...session, revokedAt: now, revokeReason: "refresh_reused" } };
      }
      if (session.expiresAt <= now) return { kind: "expired", session };
      this.#sql.spend.run(now, hash);
      const next = newRefreshToken();
      this.#sql.insertToken.run(hashRefreshToken(next), session.id, now);
      const expiresAt = Math.min(now + this.#lifetimes.idleMs, session.createdAt + this.#lifetimes.maxAgeMs);
      this.#sql.touch.run(now, expiresAt, session.id);
      return { kind: "rotated", session: { ...session, lastUsedAt: now, expiresAt }, refreshToken: next };
    })();
  }

  get(id: string): SessionRecord | undefined {
    const row = this.#sql.byId.get(id);
    return row && toSession(row);
  }

  /** The user's sessions that are neither revoked nor expired, most recently used first (at most 100). */
  active(userId: string, now: number): SessionRecord[] {
    return this.#sql.active.all(userId, now).map(toSession);
  }

  /**
   * Revokes session `id` with `reason`, appending `event` in the same transaction when this call
   * is the one that revoked it. False when it was already revoked (nothing written).
   */
  revoke(id: string, reason: string, now: number, event: Envelope): boolean {
    return this.#db.transaction(() => {
      if (this.#sql.revoke.run(now, reason, id).changes === 0) return false;
      appendEvent(this.#db, event);
      return true;
    })();
  }

  /** Deletes every session (and refresh token) of the user; for account deletion, inside its transaction. */
  deleteForUser(userId: string): number {
    return this.#sql.deleteForUser.run(userId).changes;
  }
}

function toSession(row: Row): SessionRecord {
  return {
    id: row.id,
    userId: row.user_id,
    userAgent: row.user_agent,
    ipAddress: row.ip_address,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at ?? undefined,
    revokeReason: row.revoke_reason ?? undefined,
  };
}
