// Bundles a function for StarlingMonkey: node bundle.mjs ENTRY.mjs OUT.mjs (run in the function's folder).
//
// esbuild's browser build (package.json `browser` maps, `browser` conditions), so that axios, node-fetch and
// friends pick their fetch-based code. Node.js built-ins resolve in three ways:
// - polyfilled: the ones Kubeless/Kyma functions use most (POLYFILLS: npm packages, or runtime/node/*.mjs);
// - refused at build time: native addons (`.node`, `bindings`, `node-gyp-build`) and the packages known to need
//   sockets or native code (PACKAGES): the error names the package, who imports it, and what to use instead;
// - anything else (`fs`, `http`, `net.connect`, `worker_threads`, …) is a stub that imports fine and throws when
//   used, naming the module and what to use instead (HINTS): many packages import such modules on paths a
//   function never takes (`net.isIP`, a `try { require('worker_threads') }`).
import * as esbuild from 'esbuild';
import { dirname, join, relative, sep } from 'node:path';
import { builtinModules, createRequire } from 'node:module';

const here = dirname(new URL(import.meta.url).pathname);
const require = createRequire(join(here, 'package.json'));
const shim = (name) => join(here, 'runtime', 'node', `${name}.mjs`);

/** Built-in → the file that stands in for it. */
const POLYFILLS = {
  buffer: require.resolve('buffer/'),
  events: require.resolve('events/'),
  util: require.resolve('util/'),
  url: shim('url'),
  querystring: require.resolve('querystring-es3/'),
  path: require.resolve('path-browserify'),
  crypto: shim('crypto'),
  process: shim('process'),
  string_decoder: require.resolve('string_decoder/'),
  stream: require.resolve('stream-browserify'),
  timers: shim('timers'),
  net: shim('net'),
  assert: shim('assert'),
};

/** Built-in subpaths that are their module. */
const SUBPATHS = { 'path/posix': 'path', 'assert/strict': 'assert' };

const NO_SOCKETS =
  'a function has no raw sockets: reach the service over HTTP with fetch (its REST/HTTP API), or publish events with event.emitCloudEvent';

/** What to use instead of the built-ins a function cannot have; the stub's error says it when one is used. */
const HINTS = {
  net: NO_SOCKETS,
  tls: NO_SOCKETS,
  dgram: NO_SOCKETS,
  http: 'use fetch (or axios) for outbound HTTP; the function itself answers through its handler',
  https: 'use fetch (or axios) for outbound HTTP; the function itself answers through its handler',
  http2: 'use fetch for outbound HTTP',
  dns: 'names are resolved by the node: use fetch with the host name',
  child_process: 'a function cannot start processes: do the work in the function or call another function over HTTP',
  cluster: 'the node scales instances itself (maxConcurrency, instance pools)',
  worker_threads: 'the node scales instances itself (maxConcurrency, instance pools)',
  fs: 'a function has no files: import data as JSON modules, or fetch it',
};

/** npm packages replaced by a file of the template: node-fetch's API is the engine's own fetch. */
const ALIASES = { 'node-fetch': join(here, 'runtime', 'node', 'node-fetch.cjs') };

const DATABASE = 'use the database over HTTP with fetch (e.g. PostgREST, Neon/Supabase HTTP, a Data API)';
/** npm packages that need sockets or native code, with what to use instead. */
const PACKAGES = {
  redis: 'use a Redis REST API (e.g. Upstash) with fetch',
  ioredis: 'use a Redis REST API (e.g. Upstash) with fetch',
  '@redis/client': 'use a Redis REST API (e.g. Upstash) with fetch',
  pg: DATABASE,
  'pg-native': DATABASE,
  mysql: DATABASE,
  mysql2: DATABASE,
  mariadb: DATABASE,
  mongodb: DATABASE,
  mongoose: DATABASE,
  tedious: DATABASE,
  sqlite3: 'use sql.js (SQLite compiled to Wasm) or a database over HTTP',
  'better-sqlite3': 'use sql.js (SQLite compiled to Wasm) or a database over HTTP',
  sharp: 'a native image library: use a pure-JS one (jimp) or an image service over HTTP',
  canvas: 'a native library: use a pure-JS alternative or a service over HTTP',
  bcrypt: 'a native addon: use bcryptjs',
  kafkajs: 'publish with event.emitCloudEvent and subscribe with a kafka trigger',
  amqplib: 'publish with event.emitCloudEvent and subscribe with a trigger',
  nats: 'publish with event.emitCloudEvent and subscribe with a nats trigger',
  ws: 'a function answers requests: use HTTP (fetch) rather than WebSockets',
  bindings: 'it loads a native addon (.node file), which cannot run in Wasm: use a pure-JS package',
  'node-gyp-build': 'it loads a native addon (.node file), which cannot run in Wasm: use a pure-JS package',
};

/** `node_modules/a/node_modules/@b/c/x.js` → ['a', '@b/c']: the packages on the way to a file. */
function packagesOf(path) {
  const parts = path.split(sep);
  const chain = [];
  for (let i = 0; i < parts.length - 1; i++) {
    if (parts[i] !== 'node_modules') continue;
    chain.push(parts[i + 1].startsWith('@') ? `${parts[i + 1]}/${parts[i + 2]}` : parts[i + 1]);
  }
  return chain;
}

/** Who imports a module, in words: `handler.js` or `the npm package redis (via @redis/client)`. */
function importerText(importer) {
  const chain = packagesOf(importer);
  if (chain.length === 0) return relative(process.cwd(), importer) || importer;
  const via = chain.length > 1 ? ` (via ${chain.slice(1).join(' → ')})` : '';
  return `the npm package \`${chain[0]}\`${via}`;
}

const refuse = (text) => ({ errors: [{ text }] });

const nodeBuiltins = {
  name: 'wasmfn-node-builtins',
  setup(build) {
    build.onResolve({ filter: /^[^./]|^\.\.?\/.*\.node$/ }, (args) => {
      if (args.path.endsWith('.node')) {
        return refuse(
          `${importerText(args.importer)} loads the native addon \`${args.path}\`: native code cannot run in a Wasm function; use a pure-JS package`,
        );
      }
      const name = args.path.replace(/^node:/, '');
      const base = name.split('/')[0];
      const pkg = name.startsWith('@') ? name.split('/').slice(0, 2).join('/') : base;
      if (PACKAGES[pkg] && !args.path.startsWith('node:')) {
        return refuse(`${importerText(args.importer)} imports \`${pkg}\`, which needs raw sockets or native code: ${PACKAGES[pkg]}`);
      }
      if (ALIASES[args.path]) return { path: ALIASES[args.path] };
      const builtin = args.path.startsWith('node:') || isBuiltin(name);
      if (!builtin) return undefined;
      const polyfill = POLYFILLS[name] ?? POLYFILLS[SUBPATHS[name]];
      if (polyfill) return { path: polyfill };
      return { path: name, namespace: 'wasmfn-unavailable' };
    });
    build.onLoad({ filter: /.*/, namespace: 'wasmfn-unavailable' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(shim('unavailable'))}).unavailable(${JSON.stringify(args.path)}, ${JSON.stringify(HINTS[args.path.split('/')[0]] ?? 'a function has no files, processes or host')});`,
      resolveDir: here,
      loader: 'js',
    }));
  },
};

const BUILTINS = new Set(builtinModules);
const isBuiltin = (name) => BUILTINS.has(name);

const [entry, outfile] = process.argv.slice(2);
if (!entry || !outfile) {
  console.error('usage: node bundle.mjs ENTRY.mjs OUT.mjs');
  process.exit(2);
}
try {
  const result = await esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['worker', 'browser'],
    external: ['wasi:*'],
    inject: [shim('globals')],
    define: { global: 'globalThis', 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent',
    color: false,
    plugins: [nodeBuiltins],
  });
  for (const w of result.warnings) console.error(formatMessage(w, 'warning'));
} catch (e) {
  for (const m of e.errors ?? []) console.error(formatMessage(m, 'error'));
  if (!e.errors) console.error(e.message);
  process.exit(1);
}

function formatMessage(m, kind) {
  const at = m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ` : '';
  const line = m.location?.lineText ? `\n    ${m.location.lineText.trim()}` : '';
  return `${at}${kind}: ${m.text}${line}`;
}
