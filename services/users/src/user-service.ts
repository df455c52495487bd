import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Preferences, PreferencesSchema, UserSchema, UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { type Logger, requireUser } from "@taskmesh/platform";
import { traceparentOf } from "./events.js";
import type { PasswordHasher } from "./password-hasher.js";
import { canonicalTimeZone } from "./time-zone.js";
import type { TokenIssuer } from "./token-issuer.js";
import type { Account, StoredPreferences, UsersStore } from "./users-store.js";

export interface UserServiceDeps {
  store: UsersStore;
  hasher: PasswordHasher;
  tokens: TokenIssuer;
  logger: Logger;
  /** Clock in ms; default Date.now. */
  now?: () => number;
}

/** One message for an unknown email and a wrong password, so a login does not reveal which emails exist. */
const BAD_CREDENTIALS = "email or password is incorrect";

export const ACCOUNT_DELETION_NOT_YET = "account deletion arrives with the saga (issue 3)";

/** UserService handlers. Every method but Register and Login acts on the user of the verified token. */
export function userService(deps: UserServiceDeps): ServiceImpl<typeof UserService> {
  const { store, hasher, tokens, logger } = deps;
  const now = () => new Date((deps.now ?? Date.now)());

  return {
    async register(req, ctx) {
      // Fast answer for the common case; the UNIQUE constraint settles a race (toRpcError maps
      // SQLITE_CONSTRAINT_UNIQUE to ALREADY_EXISTS), so this check is not what guarantees it.
      if (store.findByEmail(req.email)) throw alreadyExists();
      const hash = await hasher.hash(req.password);
      let account: Account;
      try {
        account = store.createAccount(req.email, hash, now(), { traceparent: traceparentOf(ctx) });
      } catch (e) {
        if ((e as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE") throw alreadyExists();
        throw e;
      }
      logger.info({ userId: account.id }, "account registered");
      return { user: toUser(account) };
    },

    async login(req) {
      const account = store.findByEmail(req.email);
      if (!account) {
        await hasher.verifyNothing(req.password);
        throw new ConnectError(BAD_CREDENTIALS, Code.Unauthenticated);
      }
      if (!(await hasher.verify(req.password, account.passwordHash))) {
        throw new ConnectError(BAD_CREDENTIALS, Code.Unauthenticated);
      }
      if (hasher.needsRehash(account.passwordHash)) {
        store.updatePasswordHash(account.id, await hasher.hash(req.password));
        logger.info({ userId: account.id }, "password re-hashed with current scrypt parameters");
      }
      const issued = await tokens.issue(account.id);
      return {
        accessToken: issued.token,
        expireTime: timestampFromDate(issued.expireTime),
        tokenType: "Bearer",
        user: toUser(account),
      };
    },

    getMe(_req, ctx) {
      const { userId } = requireUser(ctx);
      return { user: toUser(mustFind(store, userId)) };
    },

    updatePreferences(req, ctx) {
      const { userId } = requireUser(ctx);
      // The contract marks preferences required; protovalidate has already refused a missing one.
      const prefs = fromPreferences(req.preferences as Preferences);
      if (!store.updatePreferences(userId, prefs, now())) throw accountGone();
      return { preferences: toPreferences(prefs) };
    },

    deleteAccount(_req, ctx) {
      requireUser(ctx);
      throw new ConnectError(ACCOUNT_DELETION_NOT_YET, Code.Unimplemented);
    },

    getAccountDeletion(_req, ctx) {
      requireUser(ctx);
      throw new ConnectError(ACCOUNT_DELETION_NOT_YET, Code.Unimplemented);
    },
  };
}

function alreadyExists(): ConnectError {
  return new ConnectError("an account with this email already exists", Code.AlreadyExists);
}

/** A valid token whose account no longer exists (deleted after the token was issued). */
function accountGone(): ConnectError {
  return new ConnectError("the account of this token does not exist", Code.NotFound);
}

function mustFind(store: UsersStore, userId: string): Account {
  const account = store.findById(userId);
  if (!account) throw accountGone();
  return account;
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
