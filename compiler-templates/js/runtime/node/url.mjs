// Node's `url`: the WHATWG `URL`/`URLSearchParams` the engine has, plus the legacy `parse`/`format`/`resolve`
// from the `url` npm package.
import legacy from 'url/url.js';

export const { URL, URLSearchParams } = globalThis;
export const { parse, format, resolve, resolveObject, Url } = legacy;

/** `file:` URLs name paths a function cannot open, but libraries convert them. */
export function fileURLToPath(url) {
  const u = typeof url === 'string' ? new URL(url) : url;
  if (u.protocol !== 'file:') throw new TypeError('The URL must be of scheme file');
  return decodeURIComponent(u.pathname);
}
export function pathToFileURL(path) {
  return new URL(`file://${encodeURI(path)}`);
}
export default { URL, URLSearchParams, parse, format, resolve, resolveObject, Url, fileURLToPath, pathToFileURL };
