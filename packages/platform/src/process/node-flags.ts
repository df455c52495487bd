/**
 * The flags every service's `node` runs with, in `npm start` (packages/runner) and in the images
 * (services/Dockerfile's CMD, generated from this list), so both measure the same.
 *
 * `--max-semi-space-size=4` (MiB): V8 grows the young generation's two semi-spaces up to 16 MiB
 * each while modules load (most of what start-up allocates survives), and an idle process keeps
 * them: 32 of its ~65 MiB of heap. The cost of a cap is more frequent scavenges under load, and
 * objects of calls in flight promoted to the old generation. Measured with `npm run bench --
 * --only edge,write,memory`, alternating (README "Performance"): at 2 MiB, Connect ListTasks at
 * 32 in flight through the gateway lost 20–25 % of its throughput against the default; at 4 MiB
 * no row differed from the default beyond the noise, and all seven idle services took ~56 MiB
 * less RSS (656 vs 712 MiB; 2 MiB: 635).
 *
 * No `--enable-source-maps`: it reads and keeps the source map of every module loaded
 * (node_modules included), ~4 MiB of heap and ~7% of start-up CPU per process. Stack traces name
 * the compiled dist/*.js, which tsc keeps close to the source; set NODE_OPTIONS=--enable-source-maps
 * to map them to src/*.ts when debugging.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=4"];
