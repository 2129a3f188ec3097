// `node-fetch` (v2 and v3): its API is the WHATWG fetch the engine has, which goes out over wasi:http. CommonJS,
// so that v2's `const fetch = require('node-fetch')` gets the function and v3's `import fetch from` too.
const nodeFetch = (...args) => globalThis.fetch(...args);
const isRedirect = (code) => [301, 302, 303, 307, 308].includes(code);
const { Headers, Request, Response, FormData, Blob, File } = globalThis;
module.exports = Object.assign(nodeFetch, {
  default: nodeFetch,
  fetch: nodeFetch,
  Headers,
  Request,
  Response,
  FormData,
  Blob,
  File,
  AbortError: globalThis.DOMException,
  isRedirect,
});
