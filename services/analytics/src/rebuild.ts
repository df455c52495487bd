/**
 * `node services/analytics/dist/rebuild.js --db <new path> [--nats-url <url,...>]`
 * (or `npm run rebuild -w @taskmesh/analytics -- --db <new path>`)
 *
 * Replays the TASKS and USERS streams from the start into a fresh database until caught up, prints
 * a JSON summary and exits 0. Point the service at the result with DB_PATH=<new path>. Exit 2 for
 * bad usage (or an existing file at --db), 1 when the replay fails (the partial file is removed).
 * NATS_URL and LOG_LEVEL are read from the environment like the service's.
 */
import { parseArgs } from "node:util";
import { ConfigError, createLogger, natsServers } from "@taskmesh/platform";
import { replay } from "./replay.js";

const USAGE = "usage: node services/analytics/dist/rebuild.js --db <new database path> [--nats-url nats://host:port]";

async function main(): Promise<number> {
  let db: string | undefined;
  let servers: string[];
  try {
    const { values } = parseArgs({
      options: { db: { type: "string" }, "nats-url": { type: "string" }, help: { type: "boolean", short: "h" } },
    });
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    db = values.db;
    if (!db) throw new ConfigError("--db is required");
    servers = natsServers(
      values["nats-url"] ? "--nats-url" : "NATS_URL",
      values["nats-url"] || process.env.NATS_URL || "nats://127.0.0.1:4222",
    );
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
    return 2;
  }
  const logger = createLogger("analytics-rebuild", { level: process.env.LOG_LEVEL || "info" });
  try {
    const result = await replay({ dbPath: db, servers, logger });
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  } catch (err) {
    logger.error({ err }, "rebuild failed");
    process.stderr.write(`rebuild failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return /exists; the rebuild writes a fresh database only/.test(String(err)) ? 2 : 1;
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`${String(err)}\n`);
    process.exitCode = 1;
  },
);
