// Vite builds src/ into dist/, which the gateway serves at / (reference_app/gateway/app.py).
// `npm run dev` serves the client with live reload and forwards the API and the WebSocket to a running gateway
// (`make app-up`), so the page and the API share one origin, exactly as in production.
import { defineConfig } from "vitest/config";

const gateway = process.env.GATEWAY_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // One small bundle; no source maps in the committed-to-nothing build (dist/ is git-ignored anyway).
    sourcemap: false,
  },
  server: {
    proxy: {
      "/api": gateway,
      "/ws": { target: gateway.replace(/^http/, "ws"), ws: true },
    },
  },
  test: {
    // The protocol logic is DOM-free on purpose: its tests run in plain Node, fast.
    environment: "node",
    include: ["test/**/*.test.ts"],
  },
});
