// Written for wasmfn's tests from the documented interfaces: a Kyma-style function using the Node.js built-ins and npm packages Kyma/Kubeless functions use most.
const { Buffer } = require('buffer');
const util = require('util');
const EventEmitter = require('events');
const url = require('url');
const querystring = require('querystring');
const path = require('node:path');
const crypto = require('crypto');
const axios = require('axios');
const fetch = require('node-fetch');
const _ = require('lodash');
const { v4: uuidv4, validate: uuidValidate } = require('uuid');
const dayjs = require('dayjs');
const moment = require('moment');

async function builtins() {
  const emitter = new EventEmitter();
  let heard = null;
  emitter.on('ping', (v) => { heard = v; });
  emitter.emit('ping', 'pong');
  const parsed = url.parse('http://example.test:8080/a/b?x=1&y=two');
  return {
    buffer: Buffer.from('hello').toString('base64'),
    globalBuffer: typeof Buffer === 'function' && Buffer.from([104, 105]).toString(),
    format: util.format('%s=%d', 'n', 42),
    inspect: util.inspect({ a: [1, 2] }),
    promisify: await util.promisify((v, cb) => cb(null, v * 2))(21),
    events: heard,
    urlParse: { host: parsed.host, pathname: parsed.pathname, query: parsed.query },
    whatwg: new url.URL('/c?d=4', 'http://example.test').href,
    querystring: querystring.parse('a=1&b=x%20y'),
    stringify: querystring.stringify({ q: 'a b', n: 3 }),
    path: path.join('/srv', 'fn', '../data', 'x.json'),
    ext: path.extname('index.html'),
    uuid: crypto.randomUUID().length,
    sha256: crypto.createHash('sha256').update('abc').digest('hex'),
    md5: crypto.createHash('md5').update('abc').digest('base64'),
    hmac: crypto.createHmac('sha256', 'key').update('The quick brown fox jumps over the lazy dog').digest('hex'),
    randomBytes: crypto.randomBytes(16).length,
    env: process.env.GREETING ?? null,
    nextTick: await new Promise((r) => process.nextTick(() => r('ticked'))),
  };
}

async function packages(upstream) {
  const viaAxios = await axios.get(`${upstream}/json?from=axios`, { headers: { 'x-client': 'axios' } });
  const posted = await axios.post(`${upstream}/echo`, { n: 1 });
  const viaFetch = await fetch(`${upstream}/json?from=node-fetch`);
  return {
    axios: { status: viaAxios.status, data: viaAxios.data, posted: posted.data },
    nodeFetch: { status: viaFetch.status, data: await viaFetch.json() },
    lodash: { chunk: _.chunk([1, 2, 3, 4, 5], 2), get: _.get({ a: { b: [{ c: 3 }] } }, 'a.b[0].c'), camel: _.camelCase('Foo Bar') },
    uuid: uuidValidate(uuidv4()),
    dayjs: dayjs('2024-02-28').add(1, 'day').format('YYYY-MM-DD'),
    moment: moment.utc('2024-12-31T23:00:00Z').add(2, 'hours').format('YYYY-MM-DD HH:mm'),
  };
}

module.exports = {
  main: async function (event, context) {
    const path = event.extensions.request.path;
    if (path === '/builtins') return builtins();
    if (path === '/packages') return packages(process.env.UPSTREAM);
    if (path === '/fs') return require('fs').readFileSync('/etc/passwd', 'utf8');
    event.extensions.response.status(404);
  },
};
