/**
 * The part of an rrule `RRule` the budget arms (typed structurally, so the platform does not
 * depend on rrule; tasks and recurrence, which do, pass their RRule objects).
 */
interface RuleWithOptions {
  options: { interval: number; byhour?: number[] | null; byminute?: number[] | null; bysecond?: number[] | null };
}

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
export function withBudget<T extends RuleWithOptions>(rule: T, budgetMs: number): T {
  // CPU time of this process, not wall time: a busy machine must not make a fine rule fail.
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const deadline = cpuMs() + budgetMs;
  const options = { ...rule.options };
  const interval = options.interval;
  let reads = 0;
  const tick = () => {
    if ((++reads & 255) === 0 && cpuMs() > deadline) throw new RuleBudgetExceeded();
  };
  Object.defineProperty(options, "interval", {
    enumerable: true,
    get() {
      tick();
      return interval;
    },
  });
  // The other loop: rrule's DateTime.addHours/addMinutes/addSeconds step until the time of day is
  // in BYHOUR/BYMINUTE/BYSECOND, which never happens for some INTERVAL (FREQ=MINUTELY;INTERVAL=606;
  // BYHOUR=1 spins for ever: dateutil refuses it, rrule does not). Each turn looks the time up in
  // those arrays, so their indexOf is a check too.
  for (const key of ["byhour", "byminute", "bysecond"] as const) {
    const values = options[key];
    if (!Array.isArray(values)) continue;
    const checked = [...values];
    Object.defineProperty(checked, "indexOf", {
      value: (v: number, from?: number) => {
        tick();
        return values.indexOf(v, from);
      },
    });
    options[key] = checked;
  }
  rule.options = options;
  return rule;
}
