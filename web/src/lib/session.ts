/** The signed-in user's token, kept in localStorage so a reload keeps the session until it expires. */
export interface Session {
  token: string;
  /** Epoch ms when the token stops being accepted. */
  expiresAt: number;
  userId: string;
  email: string;
}

const KEY = "taskmesh.session";

export function loadSession(now = Date.now()): Session | undefined {
  try {
    const raw = localStorage.getItem(KEY);
    if (!raw) return undefined;
    const s = JSON.parse(raw) as Session;
    if (typeof s.token !== "string" || typeof s.expiresAt !== "number" || s.expiresAt <= now) {
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
