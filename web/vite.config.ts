import react from "@vitejs/plugin-react";
import { defaultClientConditions, defineConfig } from "vite";

/**
 * `npm run dev:web`: the Vite dev server (hot reload) with every RPC path proxied to a running
 * gateway (TASKMESH_GATEWAY, default http://127.0.0.1:8080, i.e. `npm start`), so the page and the
 * API share one origin as they do when the gateway serves the build.
 */
const gateway = process.env.TASKMESH_GATEWAY ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  // @taskmesh/gen's "source" export: the generated TypeScript, bundled without a separate build.
  resolve: { conditions: ["source", ...defaultClientConditions] },
  // One bundle on purpose (531 KB, 149 KiB gzip: react-dom, protobuf-es with the buf/validate
  // descriptor, TanStack Query, rrule); Vite's 500 KB warning would only be noise at `npm start`.
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 700 },
  server: {
    host: "127.0.0.1",
    proxy: {
      // `/<package>.<Service>/<Method>`: taskmesh.*, grpc.health.v1.Health, reflection.
      "^/(taskmesh|grpc)\\.[^/]+/[^/]+$": { target: gateway, changeOrigin: false },
    },
  },
});
