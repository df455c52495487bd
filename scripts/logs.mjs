#!/usr/bin/env node
// npm run logs [-- <service>...] [--trace <id>] [--lines <n>] [--no-follow] [--data-dir <dir>]
//
// The services' logs (`<data-dir>/logs/<name>.log`, pino JSON lines) as readable lines, each
// prefixed with its service: the last --lines of each file, then new lines as they are written
// (until Ctrl-C) unless --no-follow. --trace keeps only the lines of one trace (the id the
// gateway returns in x-trace-id). Lines that are not JSON (nats-server's own log) pass through.
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync, watch } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { prettyFactory } from "pino-pretty";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const usage = `Usage: npm run logs [-- <service>...] [--trace <id>] [--lines <n>] [--no-follow] [--data-dir <dir>]`;

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      trace: { type: "string" },
      lines: { type: "string", default: "50" },
      "no-follow": { type: "boolean" },
      "data-dir": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
} catch (err) {
  console.error(`taskmesh logs: ${err.message}\n${usage}`);
  process.exit(2);
}
const { values: args, positionals } = parsed;
if (args.help) {
  console.log(usage);
  process.exit(0);
}
const lines = Number(args.lines);
if (!Number.isInteger(lines) || lines < 0) {
  console.error(`taskmesh logs: --lines must be a whole number, got ${JSON.stringify(args.lines)}`);
  process.exit(2);
}
if (args.trace !== undefined && !/^[0-9a-f]{32}$/.test(args.trace)) {
  console.error(`taskmesh logs: --trace takes a 32-hex-digit trace id (x-trace-id), got ${JSON.stringify(args.trace)}`);
  process.exit(2);
}

const logDir = join(args["data-dir"] ?? join(root, ".data"), "logs");
if (!existsSync(logDir)) {
  console.error(`taskmesh logs: ${logDir} does not exist; start the system with npm start first`);
  process.exit(1);
}
const available = readdirSync(logDir)
  .filter((f) => f.endsWith(".log"))
  .map((f) => basename(f, ".log"))
  .sort();
const unknown = positionals.filter((p) => !available.includes(p));
if (unknown.length > 0) {
  console.error(`taskmesh logs: no log for ${unknown.join(", ")} (have: ${available.join(", ")})`);
  process.exit(2);
}
const names = positionals.length > 0 ? positionals : available;
const width = Math.max(...names.map((n) => n.length));
const pretty = prettyFactory({
  colorize: process.stdout.isTTY && !process.env.NO_COLOR,
  translateTime: "SYS:HH:MM:ss.l",
  ignore: "pid,hostname,service",
  singleLine: true,
});

function show(name, line) {
  if (line.trim() === "") return;
  let record;
  try {
    record = JSON.parse(line);
  } catch {
    if (args.trace === undefined) process.stdout.write(`${name.padEnd(width)} | ${line}\n`);
    return;
  }
  if (args.trace !== undefined && record.trace_id !== args.trace) return;
  process.stdout.write(`${name.padEnd(width)} | ${pretty(record)}`);
}

/** Reads a file from `offset`, shows its complete lines, returns the new offset and the unfinished tail. */
function readFrom(name, file, offset, partial) {
  const size = statSync(file).size;
  if (size < offset) offset = 0; // rotated or truncated by a new run: start over
  if (size === offset) return { offset, partial };
  const fd = openSync(file, "r");
  const buf = Buffer.alloc(size - offset);
  readSync(fd, buf, 0, buf.length, offset);
  closeSync(fd);
  const text = partial + buf.toString("utf8");
  const parts = text.split("\n");
  const rest = parts.pop() ?? "";
  for (const l of parts) show(name, l);
  return { offset: size, partial: rest };
}

const state = new Map();
for (const name of names) {
  const file = join(logDir, `${name}.log`);
  const size = statSync(file).size;
  // Start far enough back for the last `lines` lines (at most 1 MiB), then drop the extra ones.
  const start = Math.max(0, size - 1024 * 1024);
  const fd = openSync(file, "r");
  const buf = Buffer.alloc(size - start);
  readSync(fd, buf, 0, buf.length, start);
  closeSync(fd);
  const all = buf.toString("utf8").split("\n");
  const rest = all.pop() ?? "";
  const whole = start > 0 ? all.slice(1) : all; // the first line may be cut
  for (const l of lines === 0 ? [] : whole.slice(-lines)) show(name, l);
  state.set(name, { file, offset: size, partial: rest });
}

if (!args["no-follow"]) {
  const poll = (name) => {
    const s = state.get(name);
    if (!existsSync(s.file)) return;
    Object.assign(s, readFrom(name, s.file, s.offset, s.partial));
  };
  for (const name of names) watch(state.get(name).file, () => poll(name));
  // fs.watch can miss events (network filesystems, editors): a slow poll as well.
  setInterval(() => {
    for (const name of names) poll(name);
  }, 1000);
  process.on("SIGINT", () => process.exit(0));
}
