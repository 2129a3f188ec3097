// Builds dist/vendor.js and dist/uPlot.min.css from the locked npm packages: `npm ci && node build.mjs [OUT]`
// (OUT: another folder than dist/). The output is committed (cargo build needs no npm);
// tests/e2e/console.rs rebuilds it into a temporary folder and fails when the committed one differs.
import * as esbuild from 'esbuild';
import { copyFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

const here = dirname(new URL(import.meta.url).pathname);
const out = process.argv[2] ?? join(here, 'dist');
await esbuild.build({
  entryPoints: [join(here, 'src/vendor.mjs')],
  outfile: join(out, 'vendor.js'),
  bundle: true,
  format: 'esm',
  minify: true,
  target: 'es2020',
  legalComments: 'eof',
  logLevel: 'warning',
});
await copyFile(join(here, 'node_modules/uplot/dist/uPlot.min.css'), join(out, 'uPlot.min.css'));
