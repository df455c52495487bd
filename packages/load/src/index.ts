export { type LoadOptions, type Protocol, parseLoadArgs, USAGE, UsageError } from "./args.js";
export { type RunHooks, runLoad } from "./load-run.js";
export { formatTable, type LoadReport, type MethodRow } from "./report.js";
export { MIX, MIX_METHODS, type MixMethod } from "./virtual-user.js";
