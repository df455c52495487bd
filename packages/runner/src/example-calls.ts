import type { Endpoints } from "./start-system.js";

export interface ExampleCall {
  /** What the call shows, printed as a shell comment above it. */
  title: string;
  /** One shell command line (bash); later lines may use $TOKEN set by the login line. */
  command: string;
  /** A tool the command needs that the project does not install (grpcurl). */
  needs?: string;
}

/** The account the examples register; a second run answers already_exists and the login still works. */
export const EXAMPLE_USER = { email: "ada@example.com", password: "correct-horse-battery" };

/**
 * Copy-paste calls against a running system, printed by `npm start` (and run by the e2e tests,
 * so they stay true). Connect JSON goes over plain HTTP/1.1 with curl; gRPC over h2c with
 * `npx buf curl` (node_modules/.bin/buf) or grpcurl, both using the gateway's server reflection.
 */
export function exampleCalls(endpoints: Endpoints): ExampleCall[] {
  const g = endpoints.gateway;
  const hostPort = g.replace(/^https?:\/\//, "");
  const json = (body: unknown) => `'${JSON.stringify(body)}'`;
  const connect = (method: string, body: unknown, auth = false) =>
    `curl -sS -X POST ${g}/${method} -H 'content-type: application/json'${
      auth ? ' -H "authorization: Bearer $TOKEN"' : ""
    } -d ${json(body)}`;
  const weeklyTask = {
    task: {
      title: "Weekly review",
      notes: "Mondays 09:00 Paris time, reminder 15 minutes before",
      dueTime: "2030-01-07T08:00:00Z",
      timeZone: "Europe/Paris",
      recurrenceRule: "FREQ=WEEKLY;BYDAY=MO",
      reminderOffsets: ["900s"],
    },
  };
  const bufCurl = "npx buf curl --protocol grpc --http2-prior-knowledge";
  return [
    { title: "List the public services (gRPC server reflection over h2c)", command: `${bufCurl} --list-services ${g}` },
    { title: "The same with grpcurl", command: `grpcurl -plaintext ${hostPort} list`, needs: "grpcurl" },
    ...Object.entries(endpoints.grpc)
      .filter(([name]) => name !== "gateway")
      .map(([name, address]) => ({
        title: `Reflection on the ${name} backend itself`,
        command: `${bufCurl} --list-services http://${address}`,
      })),
    {
      title: "Register (Connect JSON over HTTP/1.1; a second run says already_exists)",
      command: connect("taskmesh.users.v1.UserService/Register", EXAMPLE_USER),
    },
    {
      title: "Log in and keep the access token",
      command: `TOKEN=$(${connect("taskmesh.users.v1.UserService/Login", EXAMPLE_USER)} | node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).accessToken')`,
    },
    {
      title: "Create a weekly task (Mondays 09:00 in Paris) with a reminder 15 minutes before",
      command: connect("taskmesh.tasks.v1.TaskService/CreateTask", weeklyTask, true),
    },
    { title: "List your tasks", command: connect("taskmesh.tasks.v1.TaskService/ListTasks", {}, true) },
    {
      title: "The same over gRPC",
      command: `${bufCurl} -H "authorization: Bearer $TOKEN" -d '{}' ${g}/taskmesh.tasks.v1.TaskService/ListTasks`,
    },
    {
      title: "The same with grpcurl",
      command: `grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{}' ${hostPort} taskmesh.tasks.v1.TaskService/ListTasks`,
      needs: "grpcurl",
    },
  ];
}

/** The calls as a shell snippet: a comment line, then the command. */
export function formatExampleCalls(calls: readonly ExampleCall[]): string {
  return calls.map((c) => `# ${c.title}${c.needs ? ` (needs ${c.needs})` : ""}\n${c.command}`).join("\n\n");
}
