/**
 * What `buf breaking` compares with (scripts/buf-baseline.mjs), on real git repositories: the
 * merge base on a branch, main's previous state on main, found in a shallow clone by deepening
 * it, and a loud error (never a quiet skip) when that state cannot be had.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without types
import { BaselineError, findBaseline } from "../../scripts/buf-baseline.mjs";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const env = {
  ...process.env,
  GIT_AUTHOR_NAME: "t",
  GIT_AUTHOR_EMAIL: "t@example.com",
  GIT_COMMITTER_NAME: "t",
  GIT_COMMITTER_EMAIL: "t@example.com",
  GIT_CONFIG_NOSYSTEM: "1",
};
const git = (cwd: string, ...args: string[]) => execFileSync("git", args, { cwd, env, encoding: "utf8" }).trim();
function repo(): { dir: string; commit: (msg: string) => string } {
  const dir = mkdtempSync(join(tmpdir(), "taskmesh-baseline-"));
  dirs.push(dir);
  git(dir, "init", "--quiet", "--initial-branch=main");
  let n = 0;
  return {
    dir,
    commit: (msg) => {
      writeFileSync(join(dir, "f.txt"), `${msg} ${n++}\n`);
      git(dir, "add", "f.txt");
      git(dir, "commit", "--quiet", "-m", msg);
      return git(dir, "rev-parse", "HEAD");
    },
  };
}
const baseline = (cwd: string, opts: Record<string, unknown> = {}) => findBaseline({ cwd, ...opts });

describe("buf breaking's baseline", () => {
  it("is the merge base with main on a branch, even after main moved on", () => {
    const r = repo();
    r.commit("one");
    const fork = r.commit("two");
    git(r.dir, "checkout", "--quiet", "-b", "feature");
    r.commit("feature work");
    git(r.dir, "checkout", "--quiet", "main");
    r.commit("main moves on");
    git(r.dir, "checkout", "--quiet", "feature");
    expect(baseline(r.dir)).toEqual({ commit: fork, why: "the merge base with main" });
  });

  it("is main's previous state (HEAD~1) on main", () => {
    const r = repo();
    r.commit("one");
    const previous = r.commit("two");
    r.commit("three");
    expect(baseline(r.dir).commit).toBe(previous);
  });

  it("deepens a shallow clone of main until HEAD~1 is there", () => {
    const r = repo();
    for (const m of ["one", "two", "three"]) r.commit(m);
    const previous = git(r.dir, "rev-parse", "HEAD~1");
    const clone = mkdtempSync(join(tmpdir(), "taskmesh-baseline-clone-"));
    dirs.push(clone);
    git(clone, "clone", "--quiet", "--depth=1", `file://${r.dir}`, ".");
    expect(git(clone, "rev-parse", "--is-shallow-repository")).toBe("true");
    expect(baseline(clone).commit).toBe(previous);
  });

  it("fails loudly in a shallow clone whose history cannot be fetched", () => {
    const r = repo();
    for (const m of ["one", "two"]) r.commit(m);
    const clone = mkdtempSync(join(tmpdir(), "taskmesh-baseline-clone-"));
    dirs.push(clone);
    git(clone, "clone", "--quiet", "--depth=1", `file://${r.dir}`, ".");
    git(clone, "remote", "remove", "origin");
    expect(() => baseline(clone)).toThrow(BaselineError);
    expect(() => baseline(clone)).toThrow(/shallow clone.*fetch-depth: 0.*BUF_AGAINST/s);
  });

  it("fails loudly without a main branch to compare with, and for a named ref that does not exist", () => {
    const r = repo();
    r.commit("one");
    git(r.dir, "branch", "--quiet", "-m", "main", "trunk");
    expect(() => baseline(r.dir)).toThrow(/cannot find the main branch/);
    expect(() => baseline(r.dir, { against: "v9.9.9" })).toThrow(/cannot find v9\.9\.9/);
  });

  it("says there is nothing earlier on main's very first commit", () => {
    const r = repo();
    r.commit("one");
    expect(baseline(r.dir)).toEqual({ commit: undefined, why: "HEAD is main's first commit" });
  });
});
