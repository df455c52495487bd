/**
 * A small kustomize for the subset taskmesh uses: `resources` (files and directories),
 * `components`, JSON 6902 `patches` with a `target`, and `images`. Anything else in a
 * kustomization is an error, not silently ignored. Where `kubectl kustomize` is installed the
 * tests check this renderer's output equals it; elsewhere this is what renders the overlays.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { type JsonPatchOp, KUSTOMIZATION_KEYS, type Kustomization, type PatchTarget } from "../gen/kustomization.js";

export interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

export const resourceId = (r: Resource) => `${r.apiVersion}/${r.kind}/${r.metadata.namespace ?? ""}/${r.metadata.name}`;

export function readDocs(file: string): Resource[] {
  return parseAllDocuments(readFileSync(file, "utf8"))
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]?.message}`);
      return d.toJS() as Resource | null;
    })
    .filter((r): r is Resource => r !== null);
}

export function loadKustomization(dir: string): Kustomization {
  const file = join(dir, "kustomization.yaml");
  if (!existsSync(file)) throw new Error(`${dir}: no kustomization.yaml`);
  const k = parse(readFileSync(file, "utf8")) as Kustomization;
  for (const key of Object.keys(k)) {
    if (!KUSTOMIZATION_KEYS.has(key))
      throw new Error(`${file}: "${key}" is not supported by tests/mesh/lib/kustomize.ts`);
  }
  return k;
}

function matches(r: Resource, t: PatchTarget): boolean {
  const [group, version] = r.apiVersion.includes("/") ? r.apiVersion.split("/") : ["", r.apiVersion];
  return (
    r.kind === t.kind &&
    r.metadata.name === t.name &&
    (t.group === undefined || t.group === group) &&
    (t.version === undefined || t.version === version)
  );
}

const unescapeToken = (token: string) => token.replace(/~1/g, "/").replace(/~0/g, "~");

/** RFC 6902 add/replace/remove on `doc` (in place); a path that does not resolve is an error. */
export function applyJsonPatch(doc: unknown, ops: JsonPatchOp[], where: string): void {
  for (const op of ops) {
    const tokens = op.path.split("/").slice(1).map(unescapeToken);
    const last = tokens.pop();
    if (last === undefined) throw new Error(`${where}: cannot ${op.op} the whole document`);
    let parent: unknown = doc;
    for (const t of tokens) {
      const next = Array.isArray(parent) ? parent[Number(t)] : (parent as Record<string, unknown> | null)?.[t];
      if (next === undefined || next === null || typeof next !== "object") {
        throw new Error(`${where}: ${op.op} ${op.path}: "${t}" does not exist`);
      }
      parent = next;
    }
    const value = structuredClone(op.value);
    if (Array.isArray(parent)) {
      const i = last === "-" ? parent.length : Number(last);
      if (!Number.isInteger(i) || i < 0 || i > parent.length || (op.op !== "add" && i >= parent.length)) {
        throw new Error(`${where}: ${op.op} ${op.path}: index out of range`);
      }
      if (op.op === "add") parent.splice(i, 0, value);
      else if (op.op === "replace") parent[i] = value;
      else parent.splice(i, 1);
    } else {
      const obj = parent as Record<string, unknown>;
      if (op.op !== "add" && !(last in obj)) throw new Error(`${where}: ${op.op} ${op.path}: "${last}" does not exist`);
      if (op.op === "remove") delete obj[last];
      else obj[last] = value;
    }
  }
}

function applyImages(resources: Resource[], images: NonNullable<Kustomization["images"]>): void {
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      node.forEach(visit);
      return;
    }
    if (node === null || typeof node !== "object") return;
    const obj = node as Record<string, unknown>;
    for (const key of ["containers", "initContainers"]) {
      const list = obj[key];
      if (!Array.isArray(list)) continue;
      for (const c of list as { image?: string }[]) {
        if (typeof c.image !== "string") continue;
        const name = c.image.replace(/@.*$/, "").replace(/:[^/:]+$/, "");
        const rule = images.find((i) => i.name === name);
        if (!rule) continue;
        const tag = rule.newTag ?? (c.image.slice(name.length).replace(/^:/, "") || undefined);
        c.image = `${rule.newName ?? name}${tag ? `:${tag}` : ""}`;
      }
    }
    Object.values(obj).forEach(visit);
  };
  visit(resources);
}

function accumulate(dir: string, k: Kustomization, into: Resource[]): void {
  for (const entry of k.resources ?? []) {
    const path = join(dir, entry);
    if (!existsSync(path)) throw new Error(`${dir}/kustomization.yaml: resource ${entry} does not exist`);
    const added = statSync(path).isDirectory() ? build(path) : readDocs(path);
    for (const r of added) {
      if (into.some((x) => resourceId(x) === resourceId(r)))
        throw new Error(`${dir}: duplicate resource ${resourceId(r)}`);
      into.push(r);
    }
  }
}

function transform(dir: string, k: Kustomization, resources: Resource[]): void {
  for (const [i, p] of (k.patches ?? []).entries()) {
    const targets = resources.filter((r) => matches(r, p.target));
    if (targets.length === 0) throw new Error(`${dir}: patch ${i} (${p.target.kind}/${p.target.name}) matches nothing`);
    const ops = parse(p.patch) as JsonPatchOp[];
    if (!Array.isArray(ops)) throw new Error(`${dir}: patch ${i} is not a JSON 6902 patch (only those are supported)`);
    for (const r of targets) applyJsonPatch(r, ops, `${dir}: patch ${i} on ${resourceId(r)}`);
  }
  if (k.images) applyImages(resources, k.images);
}

/** Renders a kustomization directory like `kubectl kustomize <dir>` (for the supported subset). */
export function build(dir: string): Resource[] {
  const k = loadKustomization(dir);
  if (k.kind === "Component") throw new Error(`${dir}: a Component cannot be built on its own`);
  const resources: Resource[] = [];
  accumulate(dir, k, resources);
  for (const c of k.components ?? []) {
    const cdir = join(dir, c);
    const ck = loadKustomization(cdir);
    if (ck.kind !== "Component") throw new Error(`${cdir}: listed as a component but kind is ${ck.kind}`);
    accumulate(cdir, ck, resources);
    transform(cdir, ck, resources);
  }
  transform(dir, k, resources);
  return resources;
}

/** Every file a kustomization (and what it includes) names, for the "names only existing files" check. */
export function referencedFiles(dir: string): string[] {
  const k = loadKustomization(dir);
  const out = [join(dir, "kustomization.yaml")];
  for (const entry of [...(k.resources ?? []), ...(k.components ?? [])]) {
    const path = join(dir, entry);
    if (existsSync(path) && statSync(path).isDirectory()) out.push(...referencedFiles(path));
    else out.push(path);
  }
  return out;
}
