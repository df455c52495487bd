/**
 * The flags every service's `node` runs with, in `npm start` (packages/runner) and in the images
 * (services/Dockerfile's CMD, generated from this list), so both measure the same.
 *
 * `--max-semi-space-size=2` (MiB): V8 grows the young generation's two semi-spaces up to 16 MiB
 * each while modules load (most of what start-up allocates survives), and an idle process keeps
 * them: 32 of its ~65 MiB of heap. Capped at 2 MiB, idle RSS is ~25 MiB lower per process; the
 * cost is more frequent (smaller) scavenges under load, measured with `npm run bench -- --only
 * write,edge` (README "Performance").
 *
 * No `--enable-source-maps`: it reads and keeps the source map of every module loaded
 * (node_modules included), ~4 MiB of heap and ~7% of start-up CPU per process. Stack traces name
 * the compiled dist/*.js, which tsc keeps close to the source; set NODE_OPTIONS=--enable-source-maps
 * to map them to src/*.ts when debugging.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=2"];
