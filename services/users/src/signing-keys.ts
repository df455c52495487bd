import {
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "@taskmesh/platform";
import { USER_TOKEN_ALG } from "@taskmesh/platform";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type JWTVerifyGetKey,
} from "jose";

/** One key as persisted: the private JWK (public part included) and its lifecycle. */
interface StoredKey {
  kid: string;
  createdAt: string;
  /** Set when the key no longer verifies anything; it then leaves the JWKS. */
  retiredAt?: string;
  privateJwk: JWK;
}

interface KeyFile {
  keys: StoredKey[];
}

interface LoadedKey {
  stored: StoredKey;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export interface SigningKeysOptions {
  logger?: Logger;
  /** Clock for createdAt/retiredAt. Default Date.now. */
  now?: () => number;
}

/**
 * The Ed25519 keys that sign user tokens, persisted as JWKs in one JSON file (mode 0600).
 *
 * - The first start generates a key; later starts load it, so tokens survive a restart.
 * - `rotate()` adds a new key that signs from then on; older keys stay in the JWKS (and keep
 *   verifying the tokens they signed) until `retire()`d, which an operator does once every token
 *   signed by the old key has expired (TOKEN_TTL_SECONDS after the rotation, plus verifiers' JWKS
 *   cache time, 300 s).
 * - `kid` is the RFC 7638 JWK thumbprint of the public key, so it is stable and derived, not chosen.
 * - Writes are atomic (temp file, fsync, rename, fsync the directory): a crash mid-rotation
 *   leaves the old file or the new one, never a torn one.
 */
export class SigningKeys {
  readonly path: string;
  readonly #opts: SigningKeysOptions;
  #keys: LoadedKey[] = [];
  // rotate/retire read-modify-write the file; run them one at a time.
  #changes: Promise<unknown> = Promise.resolve();
  #jwks: JSONWebKeySet = { keys: [] };
  #localSet: JWTVerifyGetKey = createLocalJWKSet({ keys: [] });

  private constructor(path: string, opts: SigningKeysOptions) {
    this.path = path;
    this.#opts = opts;
  }

  /** Loads the key file at `path`, creating it with a fresh key when it does not exist. */
  static async open(path: string, opts: SigningKeysOptions = {}): Promise<SigningKeys> {
    const keys = new SigningKeys(path, opts);
    await keys.#load();
    return keys;
  }

  /** The key that signs new tokens: the newest non-retired one. */
  get current(): { kid: string; privateKey: CryptoKey } {
    const active = this.#keys.filter((k) => !k.stored.retiredAt);
    const newest = active.at(-1);
    if (!newest) throw new Error("no active signing key");
    return { kid: newest.stored.kid, privateKey: newest.privateKey };
  }

  /** The public JWKS document: every non-retired key, newest first. */
  get jwks(): JSONWebKeySet {
    return this.#jwks;
  }

  /**
   * A jose key getter over this process's own public keys (no HTTP round trip), refreshed on
   * rotation: for `createUserTokenVerifier` in the users gRPC server.
   */
  readonly keyGetter: JWTVerifyGetKey = (header, token) => this.#localSet(header, token);

  /** Generates a new key that signs from now on; returns its kid. Older keys keep verifying. */
  rotate(): Promise<string> {
    return this.#serially(async () => {
      const next = await generate(this.#now());
      const keys = [...this.#keys.map((k) => k.stored), next];
      const loaded = await this.#importKeys(keys);
      this.#persist(keys);
      this.#install(loaded);
      this.#opts.logger?.info({ kid: next.kid }, "signing key rotated");
      return next.kid;
    });
  }

  /** Removes a key from the JWKS: tokens it signed stop verifying. The last active key cannot be retired. */
  retire(kid: string): Promise<void> {
    return this.#serially(async () => {
      const target = this.#keys.find((k) => k.stored.kid === kid && !k.stored.retiredAt);
      if (!target) throw new Error(`no active key ${kid}`);
      if (this.#keys.filter((k) => !k.stored.retiredAt).length === 1)
        throw new Error("cannot retire the last active key");
      const keys = this.#keys.map((k) =>
        k === target ? { ...k.stored, retiredAt: new Date(this.#now()).toISOString() } : k.stored,
      );
      const loaded = await this.#importKeys(keys);
      this.#persist(keys);
      this.#install(loaded);
      this.#opts.logger?.info({ kid }, "signing key retired");
    });
  }

  #serially<T>(change: () => Promise<T>): Promise<T> {
    const run = this.#changes.then(change);
    this.#changes = run.catch(() => undefined);
    return run;
  }

  #now(): number {
    return (this.#opts.now ?? Date.now)();
  }

  async #load(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    let file: KeyFile | undefined = readKeyFile(this.path);
    if (!file) {
      const first: KeyFile = { keys: [await generate(this.#now())] };
      // "wx": if another process created the file meanwhile, keep theirs and load it.
      if (writeNew(this.path, first)) this.#opts.logger?.info({ kid: first.keys[0]?.kid }, "signing key generated");
      file = readKeyFile(this.path);
      if (!file) throw new Error(`signing key file ${this.path} could not be created`);
    } else {
      const mode = statSync(this.path).mode & 0o777;
      if (mode & 0o077)
        this.#opts.logger?.warn({ path: this.path, mode: mode.toString(8) }, "key file is readable by others");
    }
    this.#install(await this.#importKeys(file.keys));
  }

  async #importKeys(stored: StoredKey[]): Promise<LoadedKey[]> {
    const loaded: LoadedKey[] = [];
    for (const s of stored) {
      const { d: _private, ...publicPart } = s.privateJwk;
      const kid = await calculateJwkThumbprint(publicPart);
      if (kid !== s.kid) throw new Error(`key file ${this.path}: kid ${s.kid} does not match its key`);
      const privateKey = (await importJWK(s.privateJwk, USER_TOKEN_ALG)) as CryptoKey;
      loaded.push({ stored: s, privateKey, publicJwk: { ...publicPart, kid, alg: USER_TOKEN_ALG, use: "sig" } });
    }
    if (!loaded.some((k) => !k.stored.retiredAt)) throw new Error(`key file ${this.path} has no active key`);
    return loaded;
  }

  #install(loaded: LoadedKey[]): void {
    this.#keys = loaded;
    this.#jwks = {
      keys: loaded
        .filter((k) => !k.stored.retiredAt)
        .map((k) => k.publicJwk)
        .reverse(),
    };
    this.#localSet = createLocalJWKSet(this.#jwks);
  }

  #persist(keys: StoredKey[]): void {
    const tmp = writeTemp(this.path, { keys });
    renameSync(tmp, this.path);
    fsyncDir(dirname(this.path));
  }
}

async function generate(now: number): Promise<StoredKey> {
  const { publicKey, privateKey } = await generateKeyPair(USER_TOKEN_ALG, { extractable: true });
  const kid = await calculateJwkThumbprint(await exportJWK(publicKey));
  return { kid, createdAt: new Date(now).toISOString(), privateJwk: await exportJWK(privateKey) };
}

function serialize(file: KeyFile): string {
  return `${JSON.stringify(file, null, 2)}\n`;
}

function readKeyFile(path: string): KeyFile | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  const file = JSON.parse(text) as KeyFile;
  if (!Array.isArray(file.keys) || file.keys.length === 0) throw new Error(`key file ${path} holds no keys`);
  return file;
}

/**
 * Creates `path` with `file`'s content (mode 0600, fsynced) unless it exists; false if it did.
 * Written to a temp file and hard-linked into place: link() fails on an existing name and never
 * exposes a half-written file, so a crash here cannot leave an empty key file behind.
 */
function writeNew(path: string, file: KeyFile): boolean {
  const tmp = writeTemp(path, file);
  try {
    linkSync(tmp, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  } finally {
    unlinkSync(tmp);
  }
  fsyncDir(dirname(path));
  return true;
}

function writeTemp(path: string, file: KeyFile): string {
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  const fd = openSync(tmp, "wx", 0o600);
  try {
    writeSync(fd, serialize(file));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return tmp;
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some platforms cannot fsync a directory; the rename is still atomic there.
  }
}
