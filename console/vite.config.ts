import { fileURLToPath } from "node:url";
import preact from "@preact/preset-vite";
import { defineConfig } from "vite";

/**
 * The console's production build: hashed static files under dist/console (the API serves them
 * at /console/). No inline script or style is emitted, so the page runs under a CSP without
 * 'unsafe-inline'. TRAPDOOR_CONSOLE_OUT sends the build elsewhere (the browser test's own copy).
 */
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/console/",
  plugins: [preact()],
  build: {
    outDir: process.env.TRAPDOOR_CONSOLE_OUT ?? fileURLToPath(new URL("../dist/console", import.meta.url)),
    emptyOutDir: true,
    // Vite's module-preload helper would be an inline script; every chunk is loaded by the entry.
    modulePreload: false,
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
});
