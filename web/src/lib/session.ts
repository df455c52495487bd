/**
 * The signed-in user's session, kept in localStorage so a reload (or another tab) keeps it: a
 * short-lived access token, and the refresh token that gets the next one (RefreshSession rotates
 * it, so every tab must use the newest one stored here).
 */
export interface Session {
  token: string;
  /** Epoch ms when the access token stops being accepted. */
  expiresAt: number;
  /** Single use: exchanged for a new access token (and a new refresh token) before expiresAt. */
  refreshToken: string;
  /** Epoch ms when the refresh token (the session) expires unless refreshed. */
  refreshExpiresAt: number;
  sessionId: string;
  userId: string;
  email: string;
}

const KEY = "taskmesh.session";
export const SESSION_STORAGE_KEY = KEY;

/** The stored session, unless it can no longer be used (its refresh token expired too). */
export function loadSession(now = Date.now()): Session | undefined {
  try {
    const raw = localStorage.getItem(KEY);
    if (!raw) return undefined;
    const s = JSON.parse(raw) as Session;
    const usableUntil = typeof s.refreshToken === "string" && s.refreshToken ? s.refreshExpiresAt : s.expiresAt;
    if (typeof s.token !== "string" || typeof usableUntil !== "number" || usableUntil <= now) {
      localStorage.removeItem(KEY);
      return undefined;
    }
    return s;
  } catch {
    return undefined;
  }
}

export function saveSession(s: Session): void {
  localStorage.setItem(KEY, JSON.stringify(s));
}

export function clearSession(): void {
  localStorage.removeItem(KEY);
}

export function hasStoredSession(): boolean {
  try {
    return localStorage.getItem(KEY) !== null;
  } catch {
    return false;
  }
}

/** When to refresh: a minute before the access token expires (at least 5 s from now). */
export function refreshDelayMs(s: Session, now = Date.now()): number {
  return Math.max(5_000, s.expiresAt - 60_000 - now);
}
