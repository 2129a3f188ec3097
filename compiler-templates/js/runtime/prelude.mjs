// Evaluated before the user's module: captures `addEventListener('fetch', …)` so the wasmfn dispatcher stays the
// one real fetch listener. Node-style `process` comes from node/process.mjs (injected into every bundle).
import { environment, startServing } from './node/process.mjs';

export { environment, startServing };
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
