import { mkdirSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "@taskmesh/platform/testing";
import { afterAll, describe, expect, it } from "vitest";
import { webBuildState } from "./web-build.js";

const dir = tempDir("runner-web-build-");
afterAll(() => dir.remove());

/** Sets a file's modification time to `at` (seconds since the epoch). */
function write(path: string, at: number): void {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, "x");
  utimesSync(path, at, at);
}

describe("webBuildState", () => {
  const root = dir.path;
  const source = join(root, "web", "src", "pages", "TasksPage.tsx");
  const gen = join(root, "packages", "gen", "src", "taskmesh", "tasks", "v1", "tasks_pb.ts");
  const index = join(root, "web", "dist", "index.html");

  it("is stale when there is no build", () => {
    write(source, 1000);
    expect(webBuildState(root)).toEqual({ dist: join(root, "web", "dist"), stale: true });
  });

  it("is up to date when the build is newer than every source, nested folders included", () => {
    write(gen, 1000);
    write(index, 2000);
    // Directory mtimes change when files are added: set them back so only file times count here.
    for (const d of ["web", "web/src", "web/src/pages", "packages/gen/src", "packages/gen/src/taskmesh"])
      utimesSync(join(root, d), 1000, 1000);
    for (const d of ["packages/gen/src/taskmesh/tasks", "packages/gen/src/taskmesh/tasks/v1"])
      utimesSync(join(root, d), 1000, 1000);
    expect(webBuildState(root).stale).toBe(false);
  });

  it("is stale again when a page or a generated contract changes after the build", () => {
    write(source, 3000);
    expect(webBuildState(root).stale).toBe(true);
    write(source, 1000);
    utimesSync(join(root, "web", "src", "pages"), 1000, 1000);
    expect(webBuildState(root).stale).toBe(false);
    write(gen, 3000);
    expect(webBuildState(root).stale).toBe(true);
  });
});
