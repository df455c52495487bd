import { UserInternalService, UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  createLogger,
  createUserTokenVerifier,
  GrpcServer,
  type Logger,
  register,
  ServiceTokens,
} from "@taskmesh/platform";
import type { UsersConfig } from "./config.js";
import { JwksServer } from "./jwks-server.js";
import { PasswordHasher, type ScryptParams } from "./password-hasher.js";
import { SigningKeys } from "./signing-keys.js";
import { TokenIssuer } from "./token-issuer.js";
import { userInternalService } from "./user-internal-service.js";
import { userService } from "./user-service.js";
import { UsersStore } from "./users-store.js";

export type { UsersConfig } from "./config.js";
export { loadUsersConfig } from "./config.js";

export interface UsersDeps {
  /** Default: a JSON logger named "users" at config.logLevel. */
  logger?: Logger;
  /** Clock in ms for account timestamps and token iat/exp. Default Date.now. */
  now?: () => number;
  /** scrypt cost. Default DEFAULT_SCRYPT_PARAMS. */
  scrypt?: ScryptParams;
}

export interface UsersApp {
  /** Loads (or creates) the signing key, then binds gRPC and the JWKS HTTP server. */
  listen(): Promise<{ grpcPort: number; httpPort: number }>;
  /** Stops accepting, drains in-flight calls, closes the HTTP server and the database. */
  shutdown(): Promise<void>;
  /** The signing key set, available once listen() resolved (for rotation by an operator or a test). */
  readonly keys: SigningKeys;
}

/**
 * The users service, wired but not listening: accounts and preferences in SQLite, scrypt
 * password hashes, EdDSA access tokens whose public keys are served as a JWKS over HTTP.
 * This server verifies user tokens against its own keys (no HTTP hop to itself).
 */
export function build(config: UsersConfig, deps: UsersDeps = {}): UsersApp {
  const logger = deps.logger ?? createLogger("users", { level: config.logLevel });
  const now = deps.now ?? Date.now;
  const store = UsersStore.open(config.dbPath);
  const hasher = new PasswordHasher(deps.scrypt);
  // Loading or generating the key is async, so it happens in listen(); no handler runs before.
  let keys: SigningKeys | undefined;
  const keysOrThrow = () => {
    if (!keys) throw new Error("signing keys not loaded: call listen() first");
    return keys;
  };
  const grpc = new GrpcServer({
    name: "users",
    logger,
    services: [
      register(
        UserService,
        userService({
          store,
          hasher,
          tokens: new TokenIssuer(() => keysOrThrow().current, config.tokenTtlSeconds, now),
          logger,
          now,
        }),
        { kind: "user", anonymous: ["register", "login"] },
      ),
      register(UserInternalService, userInternalService(store), { kind: "internal" }),
    ],
    userTokens: createUserTokenVerifier((header, token) => keysOrThrow().keyGetter(header, token)),
    serviceTokens: new ServiceTokens(config.serviceSecret, "users"),
    readiness: () => store.ping(),
  });
  const jwks = new JwksServer({ jwks: () => keysOrThrow().jwks, ready: () => store.ping(), logger });

  let stopped: Promise<void> | undefined;
  return {
    get keys() {
      return keysOrThrow();
    },
    async listen() {
      keys ??= await SigningKeys.open(config.keyPath, { logger, now });
      await hasher.warmUp();
      const grpcPort = await grpc.listen(config.grpcPort, config.host);
      const httpPort = await jwks.listen(config.jwksPort, config.host);
      return { grpcPort, httpPort };
    },
    shutdown() {
      stopped ??= (async () => {
        await Promise.all([grpc.shutdown(), jwks.close()]);
        store.close();
      })();
      return stopped;
    },
  };
}
