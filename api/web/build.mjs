// Builds the console into dist/ (committed; embedded by web.go). The output
// is deterministic: CI rebuilds it from source and fails if it differs.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");
await build({
  entryPoints: { app: "src/main.tsx" },
  outdir: "dist",
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  jsx: "automatic",
  jsxImportSource: "preact",
  loader: { ".png": "dataurl", ".svg": "dataurl" },
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
});
copyFileSync("src/index.html", "dist/index.html");
