// promtool (Debian's prometheus package) run as a child process, for the rules tests.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "@taskmesh/runner";
import { parse } from "yaml";

export const RULES_DIR = join(REPO_ROOT, "mesh/observability");
export const RULES_FILE = join(RULES_DIR, "rules.yml");

export interface RuleGroup {
  name: string;
  rules: Array<{ record?: string; alert?: string; expr: string; for?: string; labels?: Record<string, string> }>;
}

export function readRuleGroups(file = RULES_FILE): RuleGroup[] {
  return (parse(readFileSync(file, "utf8")) as { groups: RuleGroup[] }).groups;
}

/** Runs promtool; resolves its exit code and output (stdout + stderr) rather than throwing on failure. */
export function promtool(args: readonly string[], cwd = REPO_ROOT): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    execFile("promtool", args, { cwd, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") {
        reject(new Error(`promtool ${args.join(" ")}: ${err.message} (install Debian's prometheus package)`));
        return;
      }
      resolve({ code: err ? Number(err.code) : 0, output: `${stdout}${stderr}` });
    });
  });
}
