// npm run generate: materialize third-party protos, then `buf generate` into packages/gen/src.
// With --check, fails when the committed generated code differs from what buf would generate.
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const env = { ...process.env, PATH: `${join(root, "node_modules/.bin")}:${process.env.PATH}` };
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: "inherit", env });

run(process.execPath, [join(root, "scripts/buf-deps.mjs")]);
run(join(root, "node_modules/.bin/buf"), ["generate", "--path", "proto/taskmesh", "--path", ".buf-deps/grpc"]);
if (process.argv.includes("--check")) {
  try {
    run("git", ["diff", "--exit-code", "--stat", "--", "packages/gen/src"]);
    const untracked = execFileSync("git", ["ls-files", "--others", "--exclude-standard", "packages/gen/src"], {
      cwd: root,
    }).toString();
    if (untracked.trim()) throw new Error(`untracked generated files:\n${untracked}`);
  } catch {
    console.error("generated code is out of date: run `npm run generate` and commit packages/gen/src");
    process.exit(1);
  }
}
