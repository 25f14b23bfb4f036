import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vitest/config";

// `npm run dev` proxies the API to a gateway started separately (DISPATCH_DEV_GATEWAY).
const gateway = process.env.DISPATCH_DEV_GATEWAY ?? "http://127.0.0.1:8787";

export default defineConfig({
  plugins: [svelte()],
  build: {
    target: "es2022",
    sourcemap: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: {
      "/api": { target: gateway, ws: true, changeOrigin: false },
      "/login": { target: gateway },
    },
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
