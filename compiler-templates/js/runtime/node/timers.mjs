// Node's `timers`: the global timers (StarlingMonkey runs them within the request).
import { setImmediate, clearImmediate } from './globals.mjs';

export const { setTimeout, clearTimeout, setInterval, clearInterval } = globalThis;
export { setImmediate, clearImmediate };
export const promises = {
  setTimeout: (ms, value) => new Promise((resolve) => globalThis.setTimeout(() => resolve(value), ms)),
  setImmediate: (value) => new Promise((resolve) => setImmediate(() => resolve(value))),
};
export default { setTimeout, clearTimeout, setInterval, clearInterval, setImmediate, clearImmediate, promises };
