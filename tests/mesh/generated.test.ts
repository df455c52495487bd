/**
 * Drift: the committed mesh files (manifests, kustomizations, Dockerfiles, mesh/topology.json)
 * are exactly what tests/mesh/gen renders from TOPOLOGY and the Protobuf descriptors.
 * `npm run mesh:gen` (MESH_GEN=write) rewrites them instead of comparing.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./gen/paths.js";
import { GENERATED_DIRS, renderMesh } from "./gen/render.js";

const rendered = await renderMesh();
const write = process.env.MESH_GEN === "write";

function committedGenerated(): string[] {
  return GENERATED_DIRS.flatMap((dir) =>
    existsSync(join(REPO_ROOT, dir))
      ? readdirSync(join(REPO_ROOT, dir))
          .filter((f) => f.endsWith(".yaml"))
          .map((f) => `${dir}/${f}`)
      : [],
  );
}

describe("generated mesh files", () => {
  if (write) {
    it("are written from TOPOLOGY (MESH_GEN=write)", () => {
      for (const stale of committedGenerated().filter((f) => !rendered.has(f))) rmSync(join(REPO_ROOT, stale));
      for (const [path, content] of rendered) {
        mkdirSync(dirname(join(REPO_ROOT, path)), { recursive: true });
        writeFileSync(join(REPO_ROOT, path), content);
      }
      expect(rendered.size).toBeGreaterThan(0);
    });
    return;
  }

  it.each([...rendered.keys()])("%s matches what the generator renders (else: npm run mesh:gen)", (path) => {
    const file = join(REPO_ROOT, path);
    expect(existsSync(file), `${path} is missing: run npm run mesh:gen`).toBe(true);
    expect(readFileSync(file, "utf8"), `${path} differs from TOPOLOGY: run npm run mesh:gen`).toBe(rendered.get(path));
  });

  it("leaves no stale generated manifest behind", () => {
    expect(committedGenerated().filter((f) => !rendered.has(f))).toEqual([]);
  });
});
