import { Code, ConnectError } from "@connectrpc/connect";
import type { ZxcvbnFactory } from "@zxcvbn-ts/core";

/** zxcvbn's scores: 0 too guessable … 4 very unguessable. 3 = "safely unguessable" against offline slow-hash guessing. */
export const DEFAULT_MIN_PASSWORD_SCORE = 3;

let estimator: Promise<ZxcvbnFactory> | undefined;

/**
 * zxcvbn and its dictionaries, imported and ranked on the first check: they are ~20 MB of heap and
 * a third of users' start-up CPU that only register needs (README "Performance").
 */
function loadEstimator(): Promise<ZxcvbnFactory> {
  estimator ??= (async () => {
    const [core, common, en] = await Promise.all([
      // @zxcvbn-ts/core ships CommonJS for Node (its ESM build uses extensionless imports), so take the default export.
      import("@zxcvbn-ts/core").then((m) => m.default),
      import("@zxcvbn-ts/language-common"),
      import("@zxcvbn-ts/language-en"),
    ]);
    return new core.ZxcvbnFactory({
      dictionary: { ...common.dictionary, ...en.dictionary },
      graphs: common.adjacencyGraphs,
      translations: en.translations,
    });
  })();
  // A failed import is not cached: the next check tries again.
  estimator.catch(() => {
    estimator = undefined;
  });
  return estimator;
}

/**
 * Refuses a password a guesser would find early: length alone let "password1234" and "aaaaaaaa"
 * through. zxcvbn estimates the guesses needed from common passwords, English words and names,
 * keyboard patterns, repeats, dates and the caller's own email; the message says why and how to
 * do better. Built once on first use (its dictionaries take a moment to rank).
 */
export async function checkPasswordStrength(
  password: string,
  email: string,
  minScore = DEFAULT_MIN_PASSWORD_SCORE,
): Promise<void> {
  const local = email.split("@")[0] ?? "";
  const r = (await loadEstimator()).check(password, [email, local]);
  if (r.score >= minScore) return;
  const why = [r.feedback.warning, ...r.feedback.suggestions].filter(Boolean).join(" ");
  throw new ConnectError(
    `invalid request: password: too easy to guess (strength ${r.score} of 4, at least ${minScore} needed)${why ? `: ${why}` : ""}`,
    Code.InvalidArgument,
  );
}
