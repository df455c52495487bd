export { EXAMPLE_USER, type ExampleCall, exampleCalls, formatExampleCalls } from "./example-calls.js";
export {
  builtServices,
  type Endpoints,
  NATS_PORT,
  REPO_ROOT,
  type RestartOptions,
  type RunningService,
  type RunningSystem,
  type StartSystemOptions,
  startOrder,
  startSystem,
} from "./start-system.js";
