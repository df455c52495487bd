import { Code, ConnectError } from "@connectrpc/connect";
import zxcvbnCore from "@zxcvbn-ts/core";
import * as common from "@zxcvbn-ts/language-common";
import * as en from "@zxcvbn-ts/language-en";

// @zxcvbn-ts/core ships CommonJS for Node (its ESM build uses extensionless imports), so take the default export.
const { ZxcvbnFactory } = zxcvbnCore;

/** zxcvbn's scores: 0 too guessable … 4 very unguessable. 3 = "safely unguessable" against offline slow-hash guessing. */
export const DEFAULT_MIN_PASSWORD_SCORE = 3;

let estimator: InstanceType<typeof ZxcvbnFactory> | undefined;

/**
 * Refuses a password a guesser would find early: length alone let "password1234" and "aaaaaaaa"
 * through. zxcvbn estimates the guesses needed from common passwords, English words and names,
 * keyboard patterns, repeats, dates and the caller's own email; the message says why and how to
 * do better. Built once on first use (its dictionaries take a moment to rank).
 */
export function checkPasswordStrength(password: string, email: string, minScore = DEFAULT_MIN_PASSWORD_SCORE): void {
  estimator ??= new ZxcvbnFactory({
    dictionary: { ...common.dictionary, ...en.dictionary },
    graphs: common.adjacencyGraphs,
    translations: en.translations,
  });
  const local = email.split("@")[0] ?? "";
  const r = estimator.check(password, [email, local]);
  if (r.score >= minScore) return;
  const why = [r.feedback.warning, ...r.feedback.suggestions].filter(Boolean).join(" ");
  throw new ConnectError(
    `invalid request: password: too easy to guess (strength ${r.score} of 4, at least ${minScore} needed)${why ? `: ${why}` : ""}`,
    Code.InvalidArgument,
  );
}
