import { createDecipheriv, createECDH, hkdfSync, randomBytes } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { importJWK, type JWTPayload, jwtVerify } from "jose";

/**
 * A browser's side of a Web Push subscription: a P-256 key pair and a 16-byte auth secret
 * (what PushManager.subscribe makes), and the decryption of an aes128gcm message for it,
 * written from RFC 8291 section 3.4 and RFC 8188 with node:crypto (not with the sender's library).
 */
export function pushDevice() {
  const ecdh = createECDH("prime256v1");
  const publicKey = ecdh.generateKeys();
  const auth = randomBytes(16);
  return {
    p256dh: publicKey.toString("base64url"),
    auth: auth.toString("base64url"),
    decrypt(body: Buffer): string {
      const salt = body.subarray(0, 16);
      const rs = body.readUInt32BE(16);
      const idlen = body[20] as number;
      const senderKey = body.subarray(21, 21 + idlen);
      const ciphertext = body.subarray(21 + idlen);
      if (ciphertext.length > rs) throw new Error("more than one record");
      const shared = ecdh.computeSecret(senderKey);
      const keyInfo = Buffer.concat([Buffer.from("WebPush: info\0"), publicKey, senderKey]);
      const ikm = Buffer.from(hkdfSync("sha256", shared, auth, keyInfo, 32));
      const cek = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16));
      const nonce = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12));
      const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
      decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
      const plain = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - 16)), decipher.final()]);
      // The last record ends with the delimiter 0x02, then zero padding (RFC 8188 2).
      const end = plain.lastIndexOf(2);
      if (end < 0 || plain.subarray(end + 1).some((b) => b !== 0)) throw new Error("bad padding");
      return plain.subarray(0, end).toString("utf8");
    },
  };
}

export interface PushHit {
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The VAPID JWT's claims, once its ES256 signature verified with the `k` key of the header. */
  claims: JWTPayload | undefined;
  /** The `k` parameter of the Authorization header (the sender's VAPID public key). */
  vapidKey: string;
  /** Why the VAPID check failed, if it did. */
  vapidError: string | undefined;
  status: number;
}

/**
 * A real HTTP server standing in for a push service (RFC 8030): it checks each request's VAPID
 * authorization (RFC 8292: `vapid t=<JWT>, k=<public key>`, ES256, `aud` = the endpoint's origin,
 * `exp` in the future) and answers the statuses scripted for the path, then 201.
 */
export async function startPushReceiver(): Promise<{
  url(path: string): string;
  hits: PushHit[];
  script(path: string, statuses: number[]): void;
  stop(): Promise<void>;
}> {
  const hits: PushHit[] = [];
  const scripts = new Map<string, number[]>();
  let origin = "";
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const path = req.url ?? "/";
      const status = scripts.get(path)?.shift() ?? 201;
      const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(String(req.headers.authorization ?? ""));
      let claims: JWTPayload | undefined;
      let vapidError: string | undefined;
      try {
        if (!m?.[1] || !m[2])
          throw new Error(`Authorization is not "vapid t=..., k=...": ${req.headers.authorization}`);
        const point = Buffer.from(m[2], "base64url");
        const key = await importJWK(
          {
            kty: "EC",
            crv: "P-256",
            x: point.subarray(1, 33).toString("base64url"),
            y: point.subarray(33, 65).toString("base64url"),
          },
          "ES256",
        );
        ({ payload: claims } = await jwtVerify(m[1], key, { algorithms: ["ES256"], audience: origin }));
        if (!claims.exp || claims.exp * 1000 <= Date.now()) throw new Error("exp is not in the future");
      } catch (err) {
        vapidError = (err as Error).message;
        claims = undefined;
      }
      hits.push({
        path,
        headers: req.headers,
        body: Buffer.concat(chunks),
        claims,
        vapidKey: m?.[2] ?? "",
        vapidError,
        status,
      });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  origin = `http://127.0.0.1:${port}`;
  return {
    url: (path) => `${origin}${path}`,
    hits,
    script: (path, statuses) => scripts.set(path, [...statuses]),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
