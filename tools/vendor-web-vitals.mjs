// Copies the web-vitals library, at the exact version package.json pins, from node_modules into
// static/js/vendor/web-vitals.iife.js with its licence header. Run after changing the version:
//   npm install --save-exact web-vitals@X.Y.Z && npm run vendor
// The IIFE build defines window.webVitals; static/js/vitals.js loads it for sampled page views.
import { readFileSync, writeFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync("node_modules/web-vitals/package.json", "utf8"));
const pinned = JSON.parse(readFileSync("package.json", "utf8")).devDependencies["web-vitals"];
if (pkg.version !== pinned) {
  throw new Error(`node_modules has web-vitals ${pkg.version}, package.json pins ${pinned}: run npm ci`);
}
const build = readFileSync("node_modules/web-vitals/dist/web-vitals.iife.js", "utf8")
  // No source map ships in static/: Django's manifest storage would insist on finding it.
  .replace(/\n?\/\/# sourceMappingURL=.*\s*$/, "\n");
const header =
  `/*! web-vitals ${pkg.version} | https://github.com/GoogleChrome/web-vitals\n` +
  ` * Copyright 2020 Google LLC. Licensed under the Apache License, Version 2.0:\n` +
  ` * http://www.apache.org/licenses/LICENSE-2.0\n` +
  ` * Vendored by tools/vendor-web-vitals.mjs from the npm package; do not edit. */\n`;
writeFileSync("static/js/vendor/web-vitals.iife.js", header + build);
console.log(`static/js/vendor/web-vitals.iife.js: web-vitals ${pkg.version}`);
