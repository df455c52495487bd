import { createReadStream, existsSync, type Stats, statSync } from "node:fs";
import { stat } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import { extname, join, resolve, sep } from "node:path";

export interface StaticFilesOptions {
  /**
   * Directory of the built web client (index.html, assets/). Undefined or "": no client is
   * served, and `/` says so. A directory without index.html is reported on `/` as not built.
   */
  root?: string;
  /** What `/` tells a person when the build is missing. Default: the path that was looked in. */
  missingHint?: string;
}

/** Content types of what a Vite build emits (and a little more); anything else is octet-stream. */
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".webmanifest": "application/manifest+json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".wasm": "application/wasm",
};

/** Vite puts content-hashed files under assets/: a changed file gets a new name, so they never go stale. */
const IMMUTABLE = "public, max-age=31536000, immutable";
/** index.html (and unhashed files) are revalidated on every load, so a new build is picked up at once. */
const REVALIDATE = "no-cache";

/** `/<package>.<Service>/<Method>`: an RPC path never falls back to the app. */
const RPC_PATH = /^\/[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+\/[A-Za-z_]\w*$/;

interface Req {
  method?: string;
  url?: string;
  headers: Record<string, string | string[] | undefined>;
}
type Res = ServerResponse | Http2ServerResponse;

/**
 * Serves the built single-page app for GET and HEAD: files by path with their content type,
 * hashed assets cached for a year, index.html revalidated; a path that is no file, asked for by
 * a browser navigating (Accept: text/html) and not shaped like an RPC method, gets index.html (the
 * app routes on the client). Never lists a directory; a decoded path that leaves the root (`..`,
 * `%2e%2e%2f`, NUL) is 404. Returns false when the request is not for it (another method), so the
 * caller answers as it would for an unknown path.
 */
export function staticFiles(opts: StaticFilesOptions): (req: Req, res: Res) => Promise<boolean> {
  const root = opts.root ? resolve(opts.root) : undefined;
  const index = root ? join(root, "index.html") : undefined;
  return async (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const head = req.method === "HEAD";
    const raw = (req.url ?? "/").split("?")[0] as string;
    let path: string;
    try {
      path = decodeURIComponent(raw);
    } catch {
      text(res, 400, "malformed path", head);
      return true;
    }
    const wantsHtml = String(req.headers.accept ?? "").includes("text/html");
    if (!root || !index || !existsSync(index)) {
      if (path === "/" || (wantsHtml && !RPC_PATH.test(path))) {
        const hint = !root
          ? "No web client is served by this gateway (WEB_ROOT is not set)."
          : `The web client is not built (no index.html in ${root}). ${opts.missingHint ?? "Build it with: npm run build:web"}`;
        text(res, 503, hint, head);
      } else text(res, 404, "not found", head);
      return true;
    }
    if (path.includes("\0")) {
      text(res, 404, "not found", head);
      return true;
    }
    // join() normalises `..` segments; whatever still ends outside the root is refused.
    const file = join(root, path);
    if (file !== root && !file.startsWith(root + sep)) {
      text(res, 404, "not found", head);
      return true;
    }
    const found = await stat(file).catch(() => undefined);
    if (found?.isFile() && file !== index) {
      sendFile(res, file, found, file.startsWith(join(root, "assets") + sep) ? IMMUTABLE : REVALIDATE, head);
      return true;
    }
    if (path === "/" || path === "/index.html" || (wantsHtml && !RPC_PATH.test(path) && !found?.isFile())) {
      sendFile(res, index, statSync(index), REVALIDATE, head);
      return true;
    }
    text(res, 404, "not found", head);
    return true;
  };
}

function sendFile(res: Res, file: string, st: Stats, cache: string, head: boolean): void {
  res.writeHead(200, {
    "content-type": TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
    "content-length": st.size,
    "cache-control": cache,
    "last-modified": st.mtime.toUTCString(),
    "x-content-type-options": "nosniff",
  });
  if (head) {
    res.end();
    return;
  }
  const stream = createReadStream(file);
  stream.on("error", () => res.end());
  stream.pipe(res);
}

function text(res: Res, status: number, body: string, head: boolean): void {
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "cache-control": REVALIDATE,
    "x-content-type-options": "nosniff",
  });
  if (head) res.end();
  else res.end(body);
}
