import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type AccountDeletionSchema,
  DeletionState,
  type Preferences,
  type PreferencesSchema,
  type SessionSchema,
  type UserSchema,
  type UserService,
} from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  callerClient,
  checkOutboundUrl,
  type Logger,
  OutboundAddressError,
  type OutboundPolicy,
  outboundPolicy,
  requireUser,
} from "@taskmesh/platform";
import { decodeJwt } from "jose";
import type { AccountDeletions } from "./account-deletion-saga.js";
import type { SagaRecord } from "./deletion-saga-log.js";
import { auditEvent } from "./events.js";
import type { PasswordHasher } from "./password-hasher.js";
import { checkPasswordStrength } from "./password-strength.js";
import type { SessionRecord, SessionStore } from "./session-store.js";
import { canonicalTimeZone } from "./time-zone.js";
import type { TokenIssuer } from "./token-issuer.js";
import type { Account, StoredPreferences, UsersStore } from "./users-store.js";

export interface UserServiceDeps {
  store: UsersStore;
  hasher: PasswordHasher;
  tokens: TokenIssuer;
  sessions: SessionStore;
  deletions: AccountDeletions;
  logger: Logger;
  /** Clock in ms; default Date.now. */
  now?: () => number;
  /** Where a webhook_url may point. Default: public addresses only. */
  webhookPolicy?: OutboundPolicy;
  /** Least zxcvbn score (0..4) a new password needs. Default 3 (DEFAULT_MIN_PASSWORD_SCORE). */
  passwordMinScore?: number;
}

/** One message for an unknown email and a wrong password, so a login does not reveal which emails exist. */
const BAD_CREDENTIALS = "email or password is incorrect";

/**
 * UserService handlers. Every method but Register, Login and RefreshSession acts on the user of
 * the verified token; here (not in the other services) a token whose session was revoked is
 * refused too, checked with one indexed read.
 */
export function userService(deps: UserServiceDeps): ServiceImpl<typeof UserService> {
  const { store, hasher, tokens, sessions, deletions, logger } = deps;
  const now = () => new Date((deps.now ?? Date.now)());

  /** The caller and the session of their token; a revoked session's token is UNAUTHENTICATED. */
  const caller = (ctx: Parameters<typeof requireUser>[0]) => {
    const { userId, token } = requireUser(ctx);
    const sessionId = tokenSessionId(token);
    if (sessionId !== undefined) {
      const s = sessions.get(sessionId);
      if (s?.revokedAt !== undefined) {
        throw new ConnectError("this session was signed out or revoked: sign in again", Code.Unauthenticated);
      }
    }
    return { userId, sessionId };
  };

  return {
    async register(req) {
      // Fast answer for the common case; the UNIQUE constraint settles a race (toRpcError maps
      // SQLITE_CONSTRAINT_UNIQUE to ALREADY_EXISTS), so this check is not what guarantees it.
      if (store.findByEmail(req.email)) throw alreadyExists();
      await checkPasswordStrength(req.password, req.email, deps.passwordMinScore);
      const hash = await hasher.hash(req.password);
      let account: Account;
      try {
        account = store.createAccount(req.email, hash, now());
      } catch (e) {
        if ((e as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE") throw alreadyExists();
        throw e;
      }
      logger.info({ userId: account.id }, "account registered");
      return { user: toUser(account) };
    },

    async login(req, ctx) {
      const account = store.findByEmail(req.email);
      if (!account) {
        await hasher.verifyNothing(req.password);
        throw new ConnectError(BAD_CREDENTIALS, Code.Unauthenticated);
      }
      if (!(await hasher.verify(req.password, account.passwordHash))) {
        // Audited against the account (its owner sees it in the activity log); the answer stays
        // the same as for an unknown email.
        store.appendEvent(auditEvent("userLoginFailed", account.id, now(), callerClient(ctx.requestHeader)));
        throw new ConnectError(BAD_CREDENTIALS, Code.Unauthenticated);
      }
      // Said only to whoever knows the password.
      if (account.disabledAt) throw accountDisabled();
      if (hasher.needsRehash(account.passwordHash)) {
        store.updatePasswordHash(account.id, await hasher.hash(req.password));
        logger.info({ userId: account.id }, "password re-hashed with current scrypt parameters");
      }
      const at = now();
      const client = callerClient(ctx.requestHeader);
      const { session, refreshToken } = sessions.create(account.id, client, at.getTime(), (s) =>
        auditEvent("userLoggedIn", account.id, at, client, { sessionId: s.id }),
      );
      const issued = await tokens.issue(account.id, session.id, account.email);
      return {
        accessToken: issued.token,
        expireTime: timestampFromDate(issued.expireTime),
        tokenType: "Bearer",
        user: toUser(account),
        refreshToken,
        refreshExpireTime: timestampFromDate(new Date(session.expiresAt)),
        sessionId: session.id,
      };
    },

    /** Rotation with reuse detection: see SessionStore.refresh. Never retried by clients (not idempotent). */
    async refreshSession(req, ctx) {
      const at = now();
      const client = callerClient(ctx.requestHeader);
      const outcome = sessions.refresh(req.refreshToken, at.getTime(), (s) =>
        auditEvent("userRefreshReused", s.userId, at, client, { sessionId: s.id }),
      );
      switch (outcome.kind) {
        case "unknown":
          throw new ConnectError("the refresh token is not valid: sign in again", Code.Unauthenticated);
        case "reused":
          logger.warn(
            { userId: outcome.session.userId, sessionId: outcome.session.id },
            "refresh token reused; session revoked",
          );
          throw new ConnectError(
            "the refresh token was already used: its session has been revoked, sign in again",
            Code.Unauthenticated,
          );
        case "revoked":
          throw new ConnectError("the session was signed out or revoked: sign in again", Code.Unauthenticated);
        case "expired":
          throw new ConnectError("the session has expired: sign in again", Code.Unauthenticated);
      }
      const { session, refreshToken } = outcome;
      const account = store.findById(session.userId);
      if (!account) throw new ConnectError("the account of this session does not exist", Code.Unauthenticated);
      if (account.disabledAt) throw accountDisabled();
      const issued = await tokens.issue(account.id, session.id, account.email);
      return {
        accessToken: issued.token,
        expireTime: timestampFromDate(issued.expireTime),
        tokenType: "Bearer",
        refreshToken,
        refreshExpireTime: timestampFromDate(new Date(session.expiresAt)),
        sessionId: session.id,
      };
    },

    /** Revokes the token's session; a repeat (or a token without a session) changes nothing. */
    logout(_req, ctx) {
      const { userId, token } = requireUser(ctx);
      const sessionId = tokenSessionId(token);
      const session = sessionId === undefined ? undefined : sessions.get(sessionId);
      if (session && session.userId === userId) {
        const at = now();
        const event = auditEvent("userLoggedOut", userId, at, callerClient(ctx.requestHeader), {
          sessionId: session.id,
        });
        sessions.revoke(session.id, "logout", at.getTime(), event);
      }
      return {};
    },

    listSessions(_req, ctx) {
      const { userId, sessionId } = caller(ctx);
      return { sessions: sessions.active(userId, now().getTime()).map((s) => toSession(s, sessionId)) };
    },

    /** The caller's own session only: another user's id is NOT_FOUND, as if it did not exist. */
    revokeSession(req, ctx) {
      const { userId } = caller(ctx);
      const id = req.sessionId.toLowerCase();
      const session = sessions.get(id);
      if (!session || session.userId !== userId) {
        throw new ConnectError(`session ${req.sessionId} not found`, Code.NotFound);
      }
      const at = now();
      const event = auditEvent("userSessionRevoked", userId, at, callerClient(ctx.requestHeader), { sessionId: id });
      sessions.revoke(id, "revoked", at.getTime(), event);
      return {};
    },

    getMe(_req, ctx) {
      const { userId } = caller(ctx);
      return { user: toUser(mustFind(store, userId)) };
    },

    async updatePreferences(req, ctx) {
      const { userId } = caller(ctx);
      mustFind(store, userId);
      // The contract marks preferences required; protovalidate has already refused a missing one.
      const prefs = fromPreferences(req.preferences as Preferences);
      if (prefs.webhookUrl !== "") await checkWebhookUrl(prefs.webhookUrl, deps.webhookPolicy ?? outboundPolicy());
      const at = now();
      const event = auditEvent("userPreferencesUpdated", userId, at, callerClient(ctx.requestHeader));
      if (!store.updatePreferences(userId, prefs, at, event)) throw accountGone();
      return { preferences: toPreferences(prefs) };
    },

    /**
     * Re-checks the password (a stolen token alone cannot delete the account), then starts the
     * deletion saga, or returns the one already running, and answers at once with its state.
     * Works on an account the running saga has disabled, so a retried request gets the same saga.
     */
    async deleteAccount(req, ctx) {
      const { userId } = caller(ctx);
      const account = store.findById(userId);
      if (!account) throw accountGone();
      if (!(await hasher.verify(req.password, account.passwordHash))) {
        throw new ConnectError("the password is incorrect", Code.Unauthenticated);
      }
      const client = callerClient(ctx.requestHeader);
      const saga = deletions.start(userId, (s) =>
        store.appendEventInTransaction(
          auditEvent("userDeletionRequested", userId, now(), client, { deletionId: s.id }),
        ),
      );
      return { deletion: toDeletion(saga) };
    },

    /** The caller's own deletion saga; another user's (or an unknown id) is NOT_FOUND. */
    getAccountDeletion(req, ctx) {
      // Answers for a disabled or already deleted account too: the token still proves who asks,
      // and this is how they learn the outcome.
      const { userId } = requireUser(ctx);
      const saga = deletions.get(req.deletionId.toLowerCase());
      if (!saga || saga.userId !== userId) {
        throw new ConnectError(`account deletion ${req.deletionId} not found`, Code.NotFound);
      }
      return { deletion: toDeletion(saga) };
    },
  };
}

/** The `sid` claim of an already verified access token (undefined for tokens issued before sessions). */
function tokenSessionId(token: string): string | undefined {
  const sid = decodeJwt(token).sid;
  return typeof sid === "string" && sid !== "" ? sid : undefined;
}

function toSession(s: SessionRecord, currentId: string | undefined): MessageInitShape<typeof SessionSchema> {
  return {
    id: s.id,
    userAgent: s.userAgent,
    ipAddress: s.ipAddress,
    createTime: timestampFromDate(new Date(s.createdAt)),
    lastUseTime: timestampFromDate(new Date(s.lastUsedAt)),
    expireTime: timestampFromDate(new Date(s.expiresAt)),
    current: s.id === currentId,
  };
}

function alreadyExists(): ConnectError {
  return new ConnectError("an account with this email already exists", Code.AlreadyExists);
}

/** A valid token whose account no longer exists (deleted after the token was issued). */
function accountGone(): ConnectError {
  return new ConnectError("the account of this token does not exist", Code.NotFound);
}

/** The account is being deleted: it cannot log in, and its tokens are refused (GetAccountDeletion aside). */
function accountDisabled(): ConnectError {
  return new ConnectError("this account is disabled: its deletion is in progress", Code.Unauthenticated);
}

function mustFind(store: UsersStore, userId: string): Account {
  const account = store.findById(userId);
  if (!account) throw accountGone();
  if (account.disabledAt) throw accountDisabled();
  return account;
}

const DELETION_STATES: Record<SagaRecord["state"], DeletionState> = {
  RUNNING: DeletionState.RUNNING,
  // Compensating is still running from the caller's point of view; the reason is already set.
  COMPENSATING: DeletionState.RUNNING,
  COMPLETED: DeletionState.COMPLETED,
  COMPENSATED: DeletionState.COMPENSATED,
};

function toDeletion(s: SagaRecord): MessageInitShape<typeof AccountDeletionSchema> {
  return {
    id: s.id,
    state: DELETION_STATES[s.state],
    step: s.step,
    reason: s.state === "COMPENSATED" ? (s.reason ?? "") : "",
    updateTime: timestampFromDate(new Date(s.updatedAt)),
  };
}

/**
 * A webhook may not point into this system's own network (SSRF): its host must be, or resolve
 * to, public addresses only. Notifications checks again when it connects (DNS rebinding).
 */
async function checkWebhookUrl(url: string, policy: OutboundPolicy): Promise<void> {
  try {
    await checkOutboundUrl(new URL(url), policy);
  } catch (err) {
    const why = err instanceof OutboundAddressError ? err.message : "is not a usable URL";
    throw new ConnectError(`invalid request: preferences.webhook_url: ${why}`, Code.InvalidArgument);
  }
}

/** Request preferences → stored form. The time zone must be in the IANA database; "" means UTC. */
export function fromPreferences(p: Preferences): StoredPreferences {
  let timeZone = "";
  if (p.timeZone !== "") {
    const canonical = canonicalTimeZone(p.timeZone);
    if (!canonical)
      throw new ConnectError(
        `invalid request: preferences.time_zone: "${p.timeZone}" is not an IANA time zone (e.g. "Europe/Paris", "UTC")`,
        Code.InvalidArgument,
      );
    timeZone = canonical;
  }
  return {
    timeZone,
    channels: [...p.channels],
    quietHours: p.quietHours ? { startMinute: p.quietHours.startMinute, endMinute: p.quietHours.endMinute } : undefined,
    webhookUrl: p.webhookUrl,
  };
}

export function toPreferences(p: StoredPreferences): MessageInitShape<typeof PreferencesSchema> {
  return {
    timeZone: p.timeZone,
    channels: p.channels,
    ...(p.quietHours ? { quietHours: p.quietHours } : {}),
    webhookUrl: p.webhookUrl,
  };
}

function toUser(a: Account): MessageInitShape<typeof UserSchema> {
  return {
    id: a.id,
    email: a.email,
    createTime: timestampFromDate(a.createTime),
    preferences: toPreferences(a.preferences),
  };
}
