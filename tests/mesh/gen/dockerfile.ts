/**
 * services/Dockerfile, the one Dockerfile of every service image (the service named by the build
 * argument SERVICE), and what a service's image needs from the context.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SERVICE_NODE_FLAGS } from "@taskmesh/platform/process";
import { REPO_ROOT } from "./paths.js";
import { APP_UID, DATA_DIR } from "./policy.js";

/**
 * node:22 — Node 22 is a supported LTS (maintenance until April 2027); Node 20 reached its end of
 * life in April 2026, so an image should not ship it. The code targets ES2023 and Node 20's API,
 * which 22 runs unchanged. bookworm-slim (glibc) rather than alpine: better-sqlite3 compiles and
 * runs against glibc without musl surprises. Its bundled npm 10 is what runs `npm ci -w`.
 */
export const NODE_IMAGE = "node:22-bookworm-slim";

/** A CMD in exec form, as a person would write it. */
const cmd = (argv: readonly string[]) => `CMD [${argv.map((a) => JSON.stringify(a)).join(", ")}]`;

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

/** The workspaces every image holds besides the service's own (the template copies exactly these). */
export const SHARED_WORKSPACES = ["packages/gen", "packages/platform"];
/** The workspaces the web client's build needs (its own and the generated clients it bundles). */
const WEB_WORKSPACES = ["packages/gen", "web"];
/** The web client's build files besides public/ and src/. */
const WEB_FILES = ["index.html", "vite.config.ts", "tsconfig.json"];
/** Where the built web client lands in every image: the gateway's WEB_ROOT is /app/ + this. */
export const WEB_DIST = "web/dist";
/** The one Dockerfile every service image builds from, with `--build-arg SERVICE=<name>`. */
export const DOCKERFILE = "services/Dockerfile";
const SERVICE_REF = "$" + "{SERVICE}";
const SELF = `services/${SERVICE_REF}`;

/**
 * One Dockerfile for every service: they differed only in the service's name, which is now the
 * build argument SERVICE (each stage re-declares it, as an ARG's scope ends at its stage).
 * `imageWorkspaces()` must be SHARED_WORKSPACES plus the service; a service that links another
 * workspace fails the Dockerfile test instead of shipping an image without it.
 */
export function renderDockerfile(header: string): string {
  const ws = [...SHARED_WORKSPACES, SELF];
  const argService = [
    "ARG SERVICE",
    `RUN test -n "${SERVICE_REF}" || { echo "build with --build-arg SERVICE=<name of a folder in services/>" >&2; exit 1; }`,
  ];
  const lines = [
    "# syntax=docker/dockerfile:1",
    `# ${header}`,
    "# Every service's image: build from the repository root with the service's name, e.g.",
    `#   docker build -f ${DOCKERFILE} --build-arg SERVICE=tasks -t taskmesh/tasks .`,
    "# Stages: toolchain → build (tsc); web (vite); dev (Tilt live update) / prod-deps → runtime (the default, last).",
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
    ...SHARED_WORKSPACES.map((w) => `COPY ${w}/package.json ${w}/`),
    "# Declared where first used: a RUN after an ARG is cached per value, and the layers above are shared.",
    ...argService,
    `COPY ${SELF}/package.json ${SELF}/`,
    "",
    "FROM toolchain AS build",
    "RUN --mount=type=cache,target=/root/.npm npm ci",
    "ARG SERVICE",
    ...ws.flatMap((w) => [`COPY ${w}/tsconfig.json ${w}/`, `COPY ${w}/src ${w}/src`]),
    `RUN npx tsc -b ${SELF}`,
    "",
    "# The web client (web/dist), which the gateway serves at / when WEB_ROOT names it (set on the gateway's",
    "# Deployment only). It does not depend on SERVICE, so one build serves every image; 0.5 MB in each.",
    `FROM ${ARG_REF} AS web`,
    "WORKDIR /app",
    "COPY package.json package-lock.json tsconfig.base.json ./",
    "COPY scripts/apply-patches.mjs scripts/",
    "COPY patches patches",
    ...WEB_WORKSPACES.map((w) => `COPY ${w}/package.json ${w}/`),
    "RUN --mount=type=cache,target=/root/.npm npm ci -w @taskmesh/web",
    "COPY packages/gen/src packages/gen/src",
    `COPY ${WEB_FILES.map((f) => `web/${f}`).join(" ")} web/`,
    "COPY web/public web/public",
    "COPY web/src web/src",
    "RUN npm run build -w @taskmesh/web",
    "",
    "# Tilt's target: sources and the compiler stay, live_update syncs src/ and re-runs tsc, node --watch restarts.",
    "FROM build AS dev",
    "ARG SERVICE",
    `COPY --from=web /app/${WEB_DIST} ${WEB_DIST}`,
    `RUN chown -R ${APP_UID}:${APP_UID} ${ws.join(" ")}`,
    `ENV NODE_ENV=development HOST=0.0.0.0 TASKMESH_DATA_DIR=${DATA_DIR}`,
    `USER ${APP_UID}:${APP_UID}`,
    "# CMD's exec form expands no variables: the service's folder is the working directory instead.",
    `WORKDIR /app/${SELF}`,
    "# Source maps in the dev image only (SERVICE_NODE_FLAGS says what they cost).",
    cmd(["node", ...SERVICE_NODE_FLAGS, "--enable-source-maps", "--watch", "dist/main.js"]),
    "",
    "# Production dependencies of this one workspace (and the workspaces it links), nothing else.",
    "FROM toolchain AS prod-deps",
    "ARG SERVICE",
    `RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev -w @taskmesh/${SERVICE_REF}`,
    ...ws.map((w) => `COPY --from=build /app/${w}/dist ${w}/dist`),
    "# patch-package is a dev dependency: take the patched packages from the build stage.",
    "COPY --from=build /app/node_modules/@connectrpc node_modules/@connectrpc",
    "",
    `FROM ${ARG_REF} AS runtime`,
    "ARG SERVICE",
    `ENV NODE_ENV=production HOST=0.0.0.0 TASKMESH_DATA_DIR=${DATA_DIR}`,
    "# Node 22 keeps compiled modules in /tmp (an emptyDir in the pod): a restarted container starts faster.",
    "ENV NODE_COMPILE_CACHE=/tmp/node-compile-cache",
    "COPY --from=prod-deps /app /app",
    `COPY --from=web /app/${WEB_DIST} /app/${WEB_DIST}`,
    `RUN mkdir -p ${DATA_DIR} && chown ${APP_UID}:${APP_UID} ${DATA_DIR}`,
    "# The node user of the official image, by number so Kubernetes' runAsNonRoot can verify it.",
    `USER ${APP_UID}:${APP_UID}`,
    `WORKDIR /app/${SELF}`,
    "# The flags of packages/platform/src/process/node-flags.ts, as `npm start` runs the services.",
    cmd(["node", ...SERVICE_NODE_FLAGS, "dist/main.js"]),
  ];
  return `${lines.join("\n")}\n`;
}

/** The paths a service's build copies from the context (COPY without --from), SERVICE substituted. */
export function contextPaths(dockerfile: string, service: string): string[] {
  const out: string[] = [];
  for (const line of dockerfile.split("\n")) {
    const m = /^COPY\s+(.*)$/.exec(line.trim());
    if (!m || /--from=/.test(m[1] as string)) continue;
    const words = (m[1] as string).split(/\s+/).filter((w) => !w.startsWith("--"));
    out.push(...words.slice(0, -1).map((w) => w.replaceAll(SERVICE_REF, service)));
  }
  return [...new Set(out)];
}
