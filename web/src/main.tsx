import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { AppProvider } from "./lib/app-context";
import { registerPushWorker } from "./lib/push";
import "./styles.css";

createRoot(document.getElementById("root") as HTMLElement).render(
  <StrictMode>
    <AppProvider>
      <App />
    </AppProvider>
  </StrictMode>,
);

// The worker that shows pushed reminders; failure only means no push on this device (Settings says why).
registerPushWorker().catch(() => {});
