// Node's `crypto`, the part functions use: random values and UUIDs (the engine's Web Crypto), and synchronous
// hashes and HMACs (`createHash`, `createHmac`) over @noble/hashes.
import { Buffer } from 'buffer';
import { sha1, md5, ripemd160 } from '@noble/hashes/legacy.js';
import { sha224, sha256, sha384, sha512 } from '@noble/hashes/sha2.js';
import { sha3_256, sha3_512 } from '@noble/hashes/sha3.js';
import { hmac } from '@noble/hashes/hmac.js';

const webcrypto = globalThis.crypto;
const ALGORITHMS = {
  md5, sha1, ripemd160, rmd160: ripemd160, sha224, sha256, sha384, sha512, 'sha3-256': sha3_256, 'sha3-512': sha3_512,
};

function algorithm(name) {
  const hash = ALGORITHMS[String(name).toLowerCase().replace(/^rsa-/, '')];
  if (!hash) throw new Error(`Digest method not supported: ${name} (wasmfn supports ${Object.keys(ALGORITHMS).join(', ')})`);
  return hash;
}

const bytes = (data, encoding) =>
  typeof data === 'string' ? Buffer.from(data, encoding ?? 'utf8') : new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength ?? data.length);

/** What `createHash`/`createHmac` return: `update(data[, encoding])`, `digest([encoding])`, `copy()`. */
class Hash {
  constructor(state) {
    this.state = state;
  }
  update(data, encoding) {
    this.state.update(bytes(data, encoding));
    return this;
  }
  digest(encoding) {
    const out = Buffer.from(this.state.digest());
    return encoding && encoding !== 'buffer' ? out.toString(encoding) : out;
  }
  copy() {
    return new Hash(this.state.clone());
  }
}

export const createHash = (name) => new Hash(algorithm(name).create());
export const createHmac = (name, key) => new Hash(hmac.create(algorithm(name), bytes(key)));
export const getHashes = () => Object.keys(ALGORITHMS);
export const randomUUID = () => webcrypto.randomUUID();
export const getRandomValues = (array) => webcrypto.getRandomValues(array);

export function randomBytes(size, callback) {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += 65536) webcrypto.getRandomValues(out.subarray(i, Math.min(size, i + 65536)));
  if (callback) {
    queueMicrotask(() => callback(null, out));
    return undefined;
  }
  return out;
}

export function randomInt(min, max) {
  if (max === undefined) [min, max] = [0, min];
  const range = max - min;
  if (!(range > 0) || range > 2 ** 32) throw new RangeError('randomInt: bad range');
  const limit = 2 ** 32 - (2 ** 32 % range);
  const word = new Uint32Array(1);
  do webcrypto.getRandomValues(word);
  while (word[0] >= limit);
  return min + (word[0] % range);
}

export function timingSafeEqual(a, b) {
  if (a.byteLength !== b.byteLength) throw new RangeError('Input buffers must have the same byte length');
  let diff = 0;
  for (let i = 0; i < a.byteLength; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export { webcrypto };
export const subtle = webcrypto?.subtle;
export default {
  createHash, createHmac, getHashes, randomUUID, getRandomValues, randomBytes, randomInt, timingSafeEqual, webcrypto,
  subtle,
};
