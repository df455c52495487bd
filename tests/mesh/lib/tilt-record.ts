/**
 * Runs the Tiltfile in a real Starlark interpreter (go.starlark.net, the one Tilt embeds) with
 * recorder builtins (tests/mesh/tilt/main.go) and returns what it asked Tilt to do. Built once per
 * test file from Debian's golang-go and golang-starlark-dev, offline (GOPATH mode).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../gen/paths.js";

/** Where Debian's golang-*-dev packages put their sources (GOPATH layout). */
const GOPATH = "/usr/share/gocode";
export const INSTALL_HELP =
  "the Tiltfile test runs the Tiltfile with go.starlark.net: install Go and the library with " +
  "`sudo apt-get install -y golang-go golang-starlark-dev` (Debian/Ubuntu; .ci/run does this)";

export interface TiltRecording {
  versionSettings?: Record<string, unknown>;
  allowedContexts: unknown[];
  dockerBuilds: DockerBuild[];
  k8sYaml: (string | string[] | { kind: "kustomize"; pathToDir: string })[];
  k8sResources: K8sResource[];
  localResources: { name: string; cmd: string; serve_cmd: string; deps: string[]; resource_deps: string[] }[];
  localCommands: string[];
  warnings: string[];
  readFiles: string[];
  failed?: string;
  execError?: string;
}
export interface DockerBuild {
  ref: string;
  context: string;
  dockerfile: string;
  build_args: Record<string, string>;
  target: string;
  only: string[];
  ignore: string[];
  live_update: (
    | { kind: "sync"; local_path: string; remote_path: string }
    | { kind: "run"; cmd: string }
    | {
        kind: "fall_back_on";
        files: string[] | string;
      }
  )[];
}
export interface K8sResource {
  workload: string;
  resource_deps: string[];
  port_forwards: { kind: "port_forward"; local_port: number; container_port: number | null; name: string }[];
  labels: string[];
}

let binary: string | undefined;

function build(): string {
  if (binary) return binary;
  const go = spawnSync("go", ["version"], { encoding: "utf8" });
  if (go.error || go.status !== 0) throw new Error(`go not found: ${INSTALL_HELP}`);
  if (!existsSync(join(GOPATH, "src/go.starlark.net/starlark"))) {
    throw new Error(`${GOPATH}/src/go.starlark.net is missing: ${INSTALL_HELP}`);
  }
  const out = join(mkdtempSync(join(tmpdir(), "taskmesh-tilt-")), "tilt-record");
  try {
    execFileSync("go", ["build", "-o", out, join(REPO_ROOT, "tests/mesh/tilt/main.go")], {
      cwd: REPO_ROOT,
      env: { ...process.env, GO111MODULE: "off", GOPATH, GOFLAGS: "" },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (e) {
    throw new Error(`building tests/mesh/tilt/main.go failed (${INSTALL_HELP}):\n${(e as { stderr?: string }).stderr}`);
  }
  binary = out;
  return out;
}

export interface EvalOptions {
  /** What k8s_context() answers. Default kind-taskmesh. */
  context?: string;
  /** The environment os.getenv sees (nothing else of this process's). */
  env?: Record<string, string>;
  /** Whether `kubectl get crd virtualservices...` finds Istio. Default true. */
  istio?: boolean;
}

export function evaluateTiltfile(opts: EvalOptions = {}): TiltRecording {
  const args = ["-context", opts.context ?? "kind-taskmesh"];
  for (const [k, v] of Object.entries(opts.env ?? {})) args.push("-env", `${k}=${v}`);
  const crd =
    opts.istio === false ? "" : "customresourcedefinition.apiextensions.k8s.io/virtualservices.networking.istio.io";
  args.push("-local", `get crd virtualservices.networking.istio.io=${crd}`);
  args.push(join(REPO_ROOT, "Tiltfile"));
  return JSON.parse(execFileSync(build(), args, { encoding: "utf8" })) as TiltRecording;
}
