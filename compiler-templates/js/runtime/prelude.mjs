// Evaluated before the user's module: captures `addEventListener('fetch', …)` so the wasmfn dispatcher stays the
// one real fetch listener, and gives Node-style `process.env` (read lazily: the environment only exists once a
// request runs, not while the component is pre-initialised).
import { getEnvironment } from 'wasi:cli/environment@0.2.10';

export const fetchListeners = [];
const addEventListener = globalThis.addEventListener;
export const realAddEventListener = addEventListener;

globalThis.addEventListener = function (type, listener, ...rest) {
  if (type === 'fetch') {
    fetchListeners.push(listener);
    return;
  }
  return addEventListener.call(this, type, listener, ...rest);
};

let env;
export function environment() {
  env ??= Object.fromEntries(getEnvironment());
  return env;
}

if (typeof globalThis.process === 'undefined') {
  globalThis.process = {
    get env() {
      return environment();
    },
  };
}
