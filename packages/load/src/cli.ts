#!/usr/bin/env node
// npm run load -- --users N --rate R --duration D [--gateway URL] [--protocol grpc|connect] [--json FILE]
// Progress on stderr about every 2 s, the per-method table on stdout at the end (also after
// Ctrl-C, with what ran so far). Exit 0 when the run finished (whatever the calls answered),
// 1 when no user could be set up or the run failed, 2 on a bad flag.
import { writeFileSync } from "node:fs";
import { parseLoadArgs, USAGE, UsageError } from "./args.js";
import { runLoad } from "./load-run.js";
import { formatTable } from "./report.js";

async function main(): Promise<number> {
  let options: ReturnType<typeof parseLoadArgs>;
  try {
    options = parseLoadArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`load: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  if (!options) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const stop = new AbortController();
  const onSignal = () => {
    if (stop.signal.aborted) process.exit(130);
    process.stderr.write("load: stopping (Ctrl-C again to quit at once)\n");
    stop.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const log = (line: string) => {
    if (!options.quiet) process.stderr.write(`load: ${line}\n`);
  };
  log(`setting up ${options.users} users at ${options.gateway} (${options.protocol})`);
  const report = await runLoad(options, { signal: stop.signal, progress: log, warn: log });
  process.stdout.write(formatTable(report));
  if (options.json) writeFileSync(options.json, `${JSON.stringify(report, null, 2)}\n`);
  if (report.usersReady === 0) {
    process.stderr.write("load: no user could register and log in; is the gateway running?\n");
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`load: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
