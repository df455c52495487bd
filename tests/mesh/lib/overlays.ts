/** The overlays, rendered once per test file, and small lookups over the rendered resources. */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { REPO_ROOT } from "../gen/paths.js";
import { build, type Resource } from "./kustomize.js";

export const OVERLAYS = ["dev", "drill", "prod"] as const;
export type OverlayName = (typeof OVERLAYS)[number];

export const overlayDir = (name: OverlayName) => join(REPO_ROOT, "mesh/overlays", name);

export function renderOverlay(name: OverlayName): Resource[] {
  return build(overlayDir(name));
}

/** `kubectl` with its built-in kustomize, if this machine has one (CI machines may not). */
export function kubectl(): string | undefined {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore" });
    return "kubectl";
  } catch {
    return undefined;
  }
}

export function kubectlKustomize(name: OverlayName): Resource[] {
  const out = execFileSync("kubectl", ["kustomize", overlayDir(name)], { encoding: "utf8" });
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Resource | null)
    .filter((r): r is Resource => r !== null);
}

export function find(resources: Resource[], kind: string, name: string): Resource | undefined {
  return resources.find((r) => r.kind === kind && r.metadata.name === name);
}

export function get<T = Resource>(resources: Resource[], kind: string, name: string): T {
  const r = find(resources, kind, name);
  if (!r) throw new Error(`no ${kind} ${name}`);
  return r as T;
}

/** Every YAML file under mesh/ (generated and hand-written). */
export function meshYamlFiles(dir = join(REPO_ROOT, "mesh")): string[] {
  return readdirSync(dir).flatMap((f) => {
    const path = join(dir, f);
    if (statSync(path).isDirectory()) return meshYamlFiles(path);
    return f.endsWith(".yaml") && existsSync(path) ? [path] : [];
  });
}
