// Node's `process` for functions: `env` is the function's environment (read lazily: it only exists once a
// request runs, not while the component is pre-initialised); the rest is what libraries commonly touch.
import { getEnvironment } from 'wasi:cli/environment@0.2.10';

let env;
let serving = false;
/** Called by the dispatcher when the first request runs: from then on the environment exists. */
export function startServing() {
  serving = true;
}

// Libraries read these while loading (util's NODE_DEBUG): quietly unset at build time.
const QUIET = new Set(['NODE_DEBUG', 'NODE_ENV', 'DEBUG', 'NODE_OPTIONS', 'READABLE_STREAM']);
const warned = new Set();
/** What `process.env` is while the component is pre-initialised (the module scope runs at build time). */
const buildTimeEnv = new Proxy(
  {},
  {
    get(_, name) {
      if (typeof name === 'string' && !QUIET.has(name) && !warned.has(name)) {
        warned.add(name);
        console.error(
          `warning: process.env.${name} is read while the module loads, which wasmfn does at build time, ` +
            'before the function has an environment: it is undefined there; read it inside the handler',
        );
      }
      return undefined;
    },
  },
);

/** The function's environment variables, as an object. */
export function environment() {
  if (!serving) return buildTimeEnv;
  env ??= Object.fromEntries(getEnvironment());
  return env;
}

const started = Date.now();
const noop = () => process;
const process = globalThis.process ?? {
  get env() {
    return environment();
  },
  argv: ['wasmfn'],
  argv0: 'wasmfn',
  execArgv: [],
  // Libraries branch on these to pick their browser/worker code paths, which suit StarlingMonkey.
  version: '',
  versions: {},
  platform: 'wasi',
  arch: 'wasm32',
  release: { name: 'wasmfn' },
  pid: 1,
  ppid: 0,
  title: 'wasmfn',
  browser: true,
  cwd: () => '/',
  chdir() {
    throw new Error('process.chdir is not available in a wasmfn function');
  },
  exit(code) {
    throw new Error(`process.exit(${code ?? ''}) called: a function ends by returning its response`);
  },
  nextTick(fn, ...args) {
    queueMicrotask(() => fn(...args));
  },
  hrtime: Object.assign(
    (prev) => {
      const ns = BigInt(Math.round(performance.now() * 1e6));
      const now = [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
      if (!prev) return now;
      let [s, n] = [now[0] - prev[0], now[1] - prev[1]];
      if (n < 0) [s, n] = [s - 1, n + 1e9];
      return [s, n];
    },
    { bigint: () => BigInt(Math.round(performance.now() * 1e6)) },
  ),
  uptime: () => (Date.now() - started) / 1000,
  memoryUsage: Object.assign(() => ({ rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 }), {
    rss: () => 0,
  }),
  emitWarning: (w) => console.warn(`warning: ${w}`),
  on: noop,
  once: noop,
  off: noop,
  addListener: noop,
  removeListener: noop,
  removeAllListeners: noop,
  emit: () => false,
  listeners: () => [],
  stdout: { write: (s) => (console.log(String(s).replace(/\n$/, '')), true), isTTY: false },
  stderr: { write: (s) => (console.error(String(s).replace(/\n$/, '')), true), isTTY: false },
};
globalThis.process = process;

export default process;
export { process };
