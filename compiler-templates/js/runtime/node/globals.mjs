// Injected into every bundle (esbuild `inject`): Node's globals that StarlingMonkey lacks, used by name.
import { Buffer } from 'buffer';
import process from './process.mjs';

const setImmediate = globalThis.setImmediate ?? ((fn, ...args) => setTimeout(fn, 0, ...args));
const clearImmediate = globalThis.clearImmediate ?? ((t) => clearTimeout(t));
globalThis.Buffer ??= Buffer;
globalThis.setImmediate ??= setImmediate;
globalThis.clearImmediate ??= clearImmediate;

export { Buffer, process, setImmediate, clearImmediate };
