// Which commit `buf breaking` compares the contracts with: the last state of main this change
// builds on. On a branch, the merge base with main; on main itself (CI runs on a clean clone of
// main), main's previous state, HEAD~1 (the first parent, so a merge compares with main before
// it). A shallow clone is deepened from its remote until that commit is there; when it cannot be
// found, this throws saying what is missing and how to get it, never skips quietly.
import { execFileSync } from "node:child_process";

export class BaselineError extends Error {}

/**
 * @param {{ cwd: string, against?: string, mainRef?: string, maxDeepen?: number }} opts
 *   against: a ref given by the caller (BUF_AGAINST or the script's argument), used as is.
 *   mainRef: the main branch; default origin/main if it exists, else main.
 * @returns {{ commit: string, why: string } | { commit: undefined, why: string }}
 *   commit undefined only for a repository whose main has one commit: there is no earlier state.
 */
export function findBaseline({ cwd, against, mainRef, maxDeepen = 6 }) {
  const git = (...args) =>
    execFileSync("git", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  const tryGit = (...args) => {
    try {
      return git(...args);
    } catch {
      return undefined;
    }
  };
  const commitOf = (ref) => tryGit("rev-parse", "--verify", "--quiet", `${ref}^{commit}`);
  const shallow = () => tryGit("rev-parse", "--is-shallow-repository") === "true";
  const remote = () => tryGit("remote")?.split("\n")[0] || undefined;
  // Deepens a shallow clone step by step (doubling) until `find()` answers, or fails loudly.
  const withHistory = (find, what) => {
    let found = find();
    for (let i = 0, depth = 50; found === undefined && shallow() && i < maxDeepen; i++, depth *= 2) {
      const r = remote();
      if (!r) break;
      tryGit("fetch", "--quiet", `--deepen=${depth}`, r);
      found = find();
    }
    if (found !== undefined) return found;
    throw new BaselineError(
      `cannot find ${what}${shallow() ? " in this shallow clone, even after deepening it" : ""}. ` +
        "Fetch the history (git fetch --unshallow, or in CI checkout with fetch-depth: 0) or name " +
        "the commit to compare with: BUF_AGAINST=<ref> npm run buf:breaking",
    );
  };

  if (against) {
    const commit = withHistory(() => commitOf(against), `${against} (BUF_AGAINST)`);
    return { commit, why: `${against} as asked` };
  }
  const main =
    mainRef ??
    (commitOf("origin/main") ? "origin/main" : commitOf("main") ? "main" : undefined) ??
    (() => {
      // A clone of one other branch: fetch main from the remote, if there is one.
      const r = remote();
      if (r && tryGit("fetch", "--quiet", r, "main:refs/remotes/origin/main") !== undefined) return "origin/main";
      throw new BaselineError(
        "cannot find the main branch (neither origin/main nor main exists, and it could not be fetched): " +
          "git fetch origin main, or name the commit to compare with: BUF_AGAINST=<ref> npm run buf:breaking",
      );
    })();
  const head = git("rev-parse", "HEAD");
  const mainTip = commitOf(main);
  // HEAD is main's tip (or an earlier commit of main): compare with the state before it.
  const onMain = head === mainTip || tryGit("merge-base", "--is-ancestor", head, mainTip) !== undefined;
  if (onMain) {
    const parents = git("rev-list", "--parents", "-n", "1", head).split(" ").slice(1);
    if (parents.length === 0 && !shallow()) return { commit: undefined, why: "HEAD is main's first commit" };
    const commit = withHistory(() => commitOf(`${head}~1`), `the commit before HEAD on ${main}`);
    return { commit, why: `${main}'s previous state (HEAD~1)` };
  }
  const commit = withHistory(() => tryGit("merge-base", head, main) || undefined, `the merge base of HEAD and ${main}`);
  return { commit, why: `the merge base with ${main}` };
}
