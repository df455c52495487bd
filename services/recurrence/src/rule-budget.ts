import type { RRule } from "rrule";

/** Thrown from inside rrule's expansion when a rule has used up its CPU budget. */
export class RuleBudgetExceeded extends Error {
  override name = "RuleBudgetExceeded";
}

/**
 * Arms `rule` so that expanding it throws RuleBudgetExceeded once it has used `budgetMs` of CPU
 * time. rrule has no cancellation, and a rule that never matches (FREQ=SECONDLY;BYMONTH=2;
 * BYMONTHDAY=30) yields nothing to a callback while it walks every day up to year 9999 (~7 s),
 * so an iteration cap on yielded dates never fires. Its expansion loop (rrule 2.8 `iter`) reads
 * `options.interval` on every turn, so a getter there is a check that the loop cannot skip; the
 * budget tests prove it still works whenever rrule is upgraded.
 */
export function withBudget<T extends Pick<RRule, "options">>(rule: T, budgetMs: number): T {
  // CPU time of this process, not wall time: a busy machine must not make a fine rule fail.
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const deadline = cpuMs() + budgetMs;
  const options = { ...rule.options };
  const interval = options.interval;
  let reads = 0;
  Object.defineProperty(options, "interval", {
    enumerable: true,
    get() {
      if ((++reads & 255) === 0 && cpuMs() > deadline) throw new RuleBudgetExceeded();
      return interval;
    },
  });
  rule.options = options;
  return rule;
}
