import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import webpush from "web-push";
import type { VapidKeys } from "./push-sender.js";

/** File in the data dir holding the generated key pair (JSON `{ publicKey, privateKey }`). */
export const VAPID_FILE = "vapid-keys.json";

/**
 * The VAPID key pair: VAPID_PUBLIC_KEY/VAPID_PRIVATE_KEY when configured; otherwise the pair in
 * `<dataDir>/vapid-keys.json`, generated and written (mode 0600) the first time. It must outlive
 * restarts: browsers subscribed with the public key, and a new key would orphan every subscription.
 */
export function loadVapidKeys(opts: {
  publicKey: string;
  privateKey: string;
  subject: string;
  dataDir: string;
}): VapidKeys & { source: "config" | "file" | "generated" } {
  if (opts.publicKey && opts.privateKey) {
    check(opts.publicKey, opts.privateKey, "VAPID_PUBLIC_KEY/VAPID_PRIVATE_KEY");
    return { publicKey: opts.publicKey, privateKey: opts.privateKey, subject: opts.subject, source: "config" };
  }
  const file = join(opts.dataDir, VAPID_FILE);
  if (existsSync(file)) {
    const { publicKey, privateKey } = JSON.parse(readFileSync(file, "utf8")) as {
      publicKey: string;
      privateKey: string;
    };
    check(publicKey, privateKey, file);
    return { publicKey, privateKey, subject: opts.subject, source: "file" };
  }
  const keys = webpush.generateVAPIDKeys();
  // Written whole then renamed, so a crash never leaves half a key file.
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(keys), { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return { ...keys, subject: opts.subject, source: "generated" };
}

function check(publicKey: string, privateKey: string, where: string): void {
  try {
    // Signs a throwaway JWT: web-push checks both keys' form on the way.
    webpush.getVapidHeaders("https://push.example", "mailto:check@taskmesh.local", publicKey, privateKey, "aes128gcm");
  } catch (err) {
    throw new Error(`${where}: not a VAPID key pair (${(err as Error).message})`);
  }
}
