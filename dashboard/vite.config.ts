import { defineConfig } from "vite";

// dashboard-api serves dist/ at `/` and the JSON API under `/api` on the same
// origin. For `npm run dev`, /api is proxied to a running dashboard-api
// (DASHBOARD_API, default http://127.0.0.1:8080).
export default defineConfig({
  // Relative asset URLs: the page also works behind a path prefix.
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: {
      "/api": process.env.DASHBOARD_API ?? "http://127.0.0.1:8080",
    },
  },
});
