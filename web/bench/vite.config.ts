// Builds the diff bench page (bench/diff.html): `scripts/bench-web-diff.sh` runs it.
import { svelte, vitePreprocess } from "@sveltejs/vite-plugin-svelte";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "./",
  plugins: [svelte({ preprocess: vitePreprocess() })],
  build: { target: "es2022", emptyOutDir: true, rollupOptions: { input: fileURLToPath(new URL("./diff.html", import.meta.url)) } },
  logLevel: "warn",
});
