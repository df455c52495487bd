/**
 * services/<name>/Dockerfile, one per built service, from one template: the workspaces it copies
 * are its own package.json's @taskmesh/* dependencies (transitively), so it carries only those.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./paths.js";
import { APP_UID, DATA_DIR, type MeshService } from "./policy.js";

/**
 * node:22 — Node 22 is a supported LTS (maintenance until April 2027); Node 20 reached its end of
 * life in April 2026, so an image should not ship it. The code targets ES2023 and Node 20's API,
 * which 22 runs unchanged. bookworm-slim (glibc) rather than alpine: better-sqlite3 compiles and
 * runs against glibc without musl surprises. Its bundled npm 10 is what runs `npm ci -w`.
 */
export const NODE_IMAGE = "node:22-bookworm-slim";

/** The Dockerfile's own `${NODE_IMAGE}` (an ARG reference, not a template placeholder). */
const ARG_REF = "$" + "{NODE_IMAGE}";

interface Workspace {
  name: string;
  dir: string;
  deps: string[];
}

function workspaces(): Map<string, Workspace> {
  const out = new Map<string, Workspace>();
  for (const parent of ["packages", "services"]) {
    for (const entry of readdirSync(join(REPO_ROOT, parent), { withFileTypes: true })) {
      const pkgPath = join(REPO_ROOT, parent, entry.name, "package.json");
      if (!entry.isDirectory() || !existsSync(pkgPath)) continue;
      const pkg = JSON.parse(readFileSync(pkgPath, "utf8")) as { name: string; dependencies?: Record<string, string> };
      out.set(pkg.name, { name: pkg.name, dir: `${parent}/${entry.name}`, deps: Object.keys(pkg.dependencies ?? {}) });
    }
  }
  return out;
}

/** The workspace directories a service's image needs: its own and every @taskmesh/* it depends on, transitively. */
export function imageWorkspaces(service: string): { name: string; dir: string }[] {
  const all = workspaces();
  const self = [...all.values()].find((w) => w.dir === `services/${service}`);
  if (!self) throw new Error(`services/${service}/package.json not found`);
  const seen = new Map<string, Workspace>();
  const visit = (w: Workspace) => {
    if (seen.has(w.name)) return;
    seen.set(w.name, w);
    for (const dep of w.deps) {
      const ws = all.get(dep);
      if (ws) visit(ws);
    }
  };
  visit(self);
  // Libraries first, the service last (layer order: what changes least first).
  return [...seen.values()].sort((a, b) => (a === self ? 1 : b === self ? -1 : a.dir.localeCompare(b.dir)));
}

export function renderDockerfile(s: MeshService, header: string): string {
  const ws = imageWorkspaces(s.name);
  const self = ws[ws.length - 1] as { name: string; dir: string };
  const ports = [s.grpcPort, ...(s.httpPort !== undefined ? [s.httpPort] : []), s.metricsPort].join(" ");
  const lines = [
    "# syntax=docker/dockerfile:1",
    `# ${header}`,
    `# ${s.name}: build from the repository root, e.g. \`docker build -f ${self.dir}/Dockerfile -t taskmesh/${s.name} .\``,
    "# Stages: toolchain → build (tsc) → dev (Tilt live update) / prod-deps → runtime (the default, last).",
    `ARG NODE_IMAGE=${NODE_IMAGE}`,
    "",
    `FROM ${ARG_REF} AS toolchain`,
    "# better-sqlite3 is compiled here from source (no prebuilt download) against the image's own Node headers.",
    "RUN apt-get update \\",
    "  && apt-get install -y --no-install-recommends python3 make g++ \\",
    "  && rm -rf /var/lib/apt/lists/*",
    "ENV npm_config_build_from_source=true npm_config_nodedir=/usr/local npm_config_fund=false npm_config_audit=false",
    "WORKDIR /app",
    "# Only the manifests this service's workspaces need: npm ci resolves them against the root lockfile.",
    "COPY package.json package-lock.json tsconfig.base.json ./",
    "# Dependency patches (patches/README.md), applied by the root postinstall during npm ci.",
    "COPY scripts/apply-patches.mjs scripts/",
    "COPY patches patches",
    ...ws.map((w) => `COPY ${w.dir}/package.json ${w.dir}/`),
    "",
    "FROM toolchain AS build",
    "RUN --mount=type=cache,target=/root/.npm npm ci",
    ...ws.flatMap((w) => [`COPY ${w.dir}/tsconfig.json ${w.dir}/`, `COPY ${w.dir}/src ${w.dir}/src`]),
    `RUN npx tsc -b ${self.dir}`,
    "",
    "# Tilt's target: sources and the compiler stay, live_update syncs src/ and re-runs tsc, node --watch restarts.",
    "FROM build AS dev",
    `RUN chown -R ${APP_UID}:${APP_UID} ${ws.map((w) => w.dir).join(" ")}`,
    `ENV NODE_ENV=development HOST=0.0.0.0 TASKMESH_DATA_DIR=${DATA_DIR}`,
    `USER ${APP_UID}:${APP_UID}`,
    `EXPOSE ${ports}`,
    `CMD ["node", "--enable-source-maps", "--watch", "${self.dir}/dist/main.js"]`,
    "",
    "# Production dependencies of this one workspace (and the workspaces it links), nothing else.",
    "FROM toolchain AS prod-deps",
    `RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev -w ${self.name}`,
    ...ws.map((w) => `COPY --from=build /app/${w.dir}/dist ${w.dir}/dist`),
    "# patch-package is a dev dependency: take the patched packages from the build stage.",
    "COPY --from=build /app/node_modules/@connectrpc node_modules/@connectrpc",
    "",
    `FROM ${ARG_REF} AS runtime`,
    `ENV NODE_ENV=production HOST=0.0.0.0 TASKMESH_DATA_DIR=${DATA_DIR}`,
    "WORKDIR /app",
    "COPY --from=prod-deps /app /app",
    `RUN mkdir -p ${DATA_DIR} && chown ${APP_UID}:${APP_UID} ${DATA_DIR}`,
    "# The node user of the official image, by number so Kubernetes' runAsNonRoot can verify it.",
    `USER ${APP_UID}:${APP_UID}`,
    `EXPOSE ${ports}`,
    `CMD ["node", "--enable-source-maps", "${self.dir}/dist/main.js"]`,
  ];
  return `${lines.join("\n")}\n`;
}
