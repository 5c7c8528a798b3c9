import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// Built by make into build/dashboard (the Makefile passes --outDir); the gateway serves it at /
// with the API under /api, so the app uses same-origin relative URLs. `npm run dev` proxies /api
// (and /readyz, /metrics) to a gateway on :8080 (GATEWAY_URL to change it).
const gateway = process.env.GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "../../build/dashboard",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      "/api": { target: gateway, changeOrigin: false },
      "/readyz": gateway,
      "/metrics": gateway,
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
