import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "@taskmesh/platform/testing";
import { afterAll, describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without types
import { checkImports } from "../../scripts/check-imports.mjs";

const check = checkImports as (root: string) => string[];
const ROOT = join(import.meta.dirname, "..", "..");

describe("check-imports", () => {
  const dir = tempDir("check-imports-");
  afterAll(() => dir.remove());

  it("finds no undeclared import, unused declaration or import cycle in this repository", () => {
    expect(check(ROOT)).toEqual([]);
  });

  it("reports an undeclared import, a dependency nobody imports, and a cycle", () => {
    const root = dir.path;
    const write = (path: string, text: string) => {
      mkdirSync(join(root, path, ".."), { recursive: true });
      writeFileSync(join(root, path), text);
    };
    write("package.json", JSON.stringify({ workspaces: ["services/*"], devDependencies: { vitest: "4" } }));
    write(
      "services/a/package.json",
      JSON.stringify({ name: "@x/a", dependencies: { jose: "6", nats: "2" }, devDependencies: { pino: "10" } }),
    );
    write(
      "services/a/src/one.ts",
      'import { jwtVerify } from "jose";\nimport { b } from "./two.js";\nexport const a = 1;\n',
    );
    write(
      "services/a/src/two.ts",
      'import { a } from "./one.js";\nimport { x } from "@connectrpc/connect";\nexport const b = a;\n',
    );
    // pino is a devDependency: fine in a test, not in a file that ships.
    write("services/a/src/three.ts", 'import pino from "pino";\nimport "node:fs";\n');
    write("services/a/src/three.test.ts", 'import pino from "pino";\nimport { it } from "vitest";\n');
    expect(check(root).sort()).toEqual(
      [
        'services/a/src/two.ts imports "@connectrpc/connect", which services/a/package.json does not declare',
        'services/a/src/three.ts imports "pino", which services/a/package.json does not declare (only in devDependencies, but this file ships)',
        'services/a/package.json declares "nats", which no file of services/a imports',
        "import cycle in services/a: src/one.ts → src/two.ts → src/one.ts",
      ].sort(),
    );
  });
});
