import { mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import { join } from "node:path";
import { tempDir } from "@taskmesh/platform/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { logger } from "./gateway.test-util.js";
import { build, type GatewayApp, loadGatewayConfig } from "./server.js";

// The real gateway over real HTTP, serving a web build laid out as Vite lays it out. No backend
// runs: static files and CORS never reach one, and an RPC without a token is refused at the edge.
const dir = tempDir("gateway-web-");
const webRoot = join(dir.path, "dist");
const INDEX = "<!doctype html><title>taskmesh</title><div id=root></div>";
const gateways: GatewayApp[] = [];
let base: string;

async function start(env: Record<string, string>): Promise<string> {
  const app = build(
    loadGatewayConfig({
      GRPC_PORT: "0",
      LOG_LEVEL: "silent",
      JWKS_URL: "http://127.0.0.1:9/jwks.json",
      SHUTDOWN_GRACE_MS: "100",
      ...env,
    }),
    { logger },
  );
  gateways.push(app);
  const { grpcPort } = await app.listen();
  return `http://127.0.0.1:${grpcPort}`;
}

/** A request with its path sent byte for byte (fetch would normalise `..` and `%2e%2e` away). */
function raw(
  url: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port, path, method: opts.method ?? "GET", headers: opts.headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

beforeAll(async () => {
  mkdirSync(join(webRoot, "assets"), { recursive: true });
  mkdirSync(join(webRoot, "nested"), { recursive: true });
  writeFileSync(join(webRoot, "index.html"), INDEX);
  writeFileSync(join(webRoot, "assets", "index-Ab12Cd34.js"), "console.log('app')");
  writeFileSync(join(webRoot, "assets", "index-Ef56Gh78.css"), "body{margin:0}");
  writeFileSync(join(webRoot, "favicon.svg"), "<svg xmlns='http://www.w3.org/2000/svg'/>");
  writeFileSync(join(webRoot, "nested", "file.txt"), "nested");
  // Beside the web root, never to be served.
  writeFileSync(join(dir.path, "secret.txt"), "SECRET");
  base = await start({ WEB_ROOT: webRoot });
});

afterAll(async () => {
  for (const g of gateways) await g.shutdown();
  dir.remove();
});

describe("gateway web client serving", () => {
  it("serves index.html at / with no-cache and the HTML content type", async () => {
    const res = await fetch(`${base}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("no-cache");
    expect(await res.text()).toBe(INDEX);
  });

  it("serves hashed assets with their content type and a year's immutable cache", async () => {
    const js = await fetch(`${base}/assets/index-Ab12Cd34.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(await js.text()).toBe("console.log('app')");
    const css = await fetch(`${base}/assets/index-Ef56Gh78.css`);
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
    const svg = await fetch(`${base}/favicon.svg`);
    expect(svg.headers.get("content-type")).toBe("image/svg+xml");
    expect(svg.headers.get("cache-control")).toBe("no-cache");
  });

  it("answers HEAD with the headers of GET and no body", async () => {
    const res = await raw(base, "/assets/index-Ab12Cd34.js", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe(String("console.log('app')".length));
    expect(res.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(res.body).toBe("");
  });

  it("serves the same files over h2c (HTTP/2 prior knowledge) on the same port", async () => {
    const session = http2.connect(base);
    try {
      const { headers, body } = await new Promise<{ headers: http2.IncomingHttpHeaders; body: string }>(
        (resolve, reject) => {
          const req = session.request({ ":path": "/assets/index-Ab12Cd34.js" });
          let body = "";
          let headers: http2.IncomingHttpHeaders = {};
          req.setEncoding("utf8");
          req.on("response", (h) => {
            headers = h;
          });
          req.on("data", (c) => {
            body += c;
          });
          req.on("end", () => resolve({ headers, body }));
          req.on("error", reject);
          req.end();
        },
      );
      expect(headers[":status"]).toBe(200);
      expect(headers["content-type"]).toBe("text/javascript; charset=utf-8");
      expect(body).toBe("console.log('app')");
    } finally {
      session.close();
    }
  });

  it("falls back to index.html for an app route a browser navigates to", async () => {
    const res = await fetch(`${base}/tasks/upcoming`, { headers: { accept: "text/html,application/xhtml+xml" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-cache");
    expect(await res.text()).toBe(INDEX);
  });

  it("answers 404, not the app, for a missing asset or a non-HTML request", async () => {
    expect((await fetch(`${base}/assets/missing.js`)).status).toBe(404);
    expect((await fetch(`${base}/tasks/upcoming`, { headers: { accept: "application/json" } })).status).toBe(404);
  });

  it("never answers an RPC path with the app, even for a browser", async () => {
    const res = await fetch(`${base}/taskmesh.tasks.v1.TaskService/NoSuchMethod`, { headers: { accept: "text/html" } });
    expect(res.status).toBe(404);
    expect(await res.text()).not.toContain("<title>taskmesh");
  });

  it("lists no directory", async () => {
    const res = await raw(base, "/nested/");
    expect(res.status).toBe(404);
    expect(res.body).not.toContain("file.txt");
    const asHtml = await raw(base, "/assets", { headers: { accept: "text/html" } });
    expect(asHtml.body).toBe(INDEX); // the app, never a listing
  });

  it("refuses paths that leave the web root, plain, encoded or absolute", async () => {
    for (const path of [
      "/../secret.txt",
      "/%2e%2e/secret.txt",
      "/..%2fsecret.txt",
      "/assets/..%2f..%2fsecret.txt",
      "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
      "//etc/passwd",
      "/%2fetc%2fpasswd",
      "/..%5csecret.txt",
      "/index.html%00.js",
    ]) {
      const res = await raw(base, path);
      expect(res.status, path).toBe(404);
      expect(res.body, path).not.toContain("SECRET");
      expect(res.body, path).not.toContain("root:");
    }
    expect((await raw(base, "/%E0%A4%A")).status).toBe(400);
  });

  it("still answers RPCs on the same port", async () => {
    const res = await fetch(`${base}/taskmesh.tasks.v1.TaskService/ListTasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe("unauthenticated");
  });

  it("says on / that the client is not built when WEB_ROOT has no index.html, and keeps serving RPCs", async () => {
    const empty = join(dir.path, "empty");
    mkdirSync(empty);
    const url = await start({ WEB_ROOT: empty });
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(503);
    expect(await res.text()).toContain("not built");
    const rpc = await fetch(`${url}/taskmesh.tasks.v1.TaskService/ListTasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(rpc.status).toBe(401);
  });

  it("says on / that no client is served when WEB_ROOT is unset", async () => {
    const url = await start({});
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(503);
    expect(await res.text()).toContain("WEB_ROOT is not set");
  });

  it("stops at start-up when WEB_ROOT is a file, or CORS_ALLOWED_ORIGINS is not a list of origins", () => {
    expect(() => loadGatewayConfig({ WEB_ROOT: join(webRoot, "index.html") })).toThrow(/WEB_ROOT must be a directory/);
    expect(() => loadGatewayConfig({ CORS_ALLOWED_ORIGINS: "https://a.example/path" })).toThrow(
      /CORS_ALLOWED_ORIGINS must list origins/,
    );
  });
});

describe("gateway CORS", () => {
  const allowed = "https://app.example.com";
  let corsBase: string;
  beforeAll(async () => {
    corsBase = await start({ CORS_ALLOWED_ORIGINS: `${allowed}, http://localhost:5173` });
  });

  it("answers a preflight from an allowed origin with Connect's and gRPC-Web's headers", async () => {
    const res = await raw(corsBase, "/taskmesh.tasks.v1.TaskService/ListTasks", {
      method: "OPTIONS",
      headers: {
        origin: allowed,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,connect-protocol-version,authorization",
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers["access-control-allow-origin"]).toBe(allowed);
    const headers = String(res.headers["access-control-allow-headers"]).toLowerCase();
    for (const h of ["content-type", "connect-protocol-version", "connect-timeout-ms", "x-grpc-web", "authorization"])
      expect(headers).toContain(h);
    expect(res.headers["access-control-allow-methods"]).toContain("POST");
  });

  it("exposes grpc-status, grpc-message and the trace id on an allowed origin's call", async () => {
    const res = await fetch(`${corsBase}/taskmesh.tasks.v1.TaskService/ListTasks`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: allowed },
      body: "{}",
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("access-control-allow-origin")).toBe(allowed);
    const exposed = String(res.headers.get("access-control-expose-headers")).toLowerCase();
    for (const h of ["grpc-status", "grpc-message", "grpc-status-details-bin", "x-trace-id"])
      expect(exposed).toContain(h);
  });

  it("gives another origin no CORS headers", async () => {
    const res = await raw(corsBase, "/taskmesh.tasks.v1.TaskService/ListTasks", {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("sends no CORS headers by default (same origin only)", async () => {
    const res = await fetch(`${base}/taskmesh.tasks.v1.TaskService/ListTasks`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: allowed },
      body: "{}",
    });
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });
});
