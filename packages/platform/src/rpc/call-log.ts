/**
 * The call graph as the code makes it: with TASKMESH_CALL_LOG=<file>, a service process appends
 * one JSON line per distinct outgoing gRPC call (caller, callee, method path) as its client makes
 * it, before the answer (a call the mesh would deny is still a call the code makes). The caller is
 * the service whose dist/main.js this process runs; the callee is the service whose <NAME>_ADDR
 * holds the call's target (how services find each other). `npm run mesh:calls` collects the file
 * over the suites that run the services as processes; tests/mesh/call-graph.test.ts checks it
 * against the AuthorizationPolicies. Unset (the default), nothing is recorded.
 */
import { appendFileSync } from "node:fs";

const file = process.env.TASKMESH_CALL_LOG?.trim() || undefined;
const caller = /services[/\\]([^/\\]+)[/\\]dist[/\\]main\.js$/.exec(process.argv[1] ?? "")?.[1];
const written = new Set<string>();

/** host:port as both an address and a grpc-js target (dns:host:port, dns:///host:port) spell it. */
const normalize = (target: string) => target.trim().replace(/^dns:(\/\/\/)?/, "");

function serviceAt(target: string): string | undefined {
  const want = normalize(target);
  for (const [key, value] of Object.entries(process.env)) {
    const m = /^([A-Z][A-Z0-9]*)_ADDR$/.exec(key);
    if (m && value !== undefined && normalize(value) === want) return (m[1] as string).toLowerCase();
  }
  return undefined;
}

/** A recorder for calls to `target`, or undefined when calls are not being recorded. */
export function callRecorder(target: string): ((path: string) => void) | undefined {
  if (file === undefined || caller === undefined) return undefined;
  const callee = serviceAt(target) ?? `unknown (${target})`;
  return (path) => {
    const line = JSON.stringify({ caller, callee, method: path });
    if (written.has(line)) return;
    written.add(line);
    appendFileSync(file, `${line}\n`);
  };
}
