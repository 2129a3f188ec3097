// Node's `assert`, the common part: ok/equal/strictEqual/deepStrictEqual/throws and their negations.
import { isDeepStrictEqual, inspect } from 'util';

export class AssertionError extends Error {
  constructor(message) {
    super(message);
    this.name = 'AssertionError';
    this.code = 'ERR_ASSERTION';
  }
}

function fail(message, fallback) {
  if (message instanceof Error) throw message;
  throw new AssertionError(message ?? fallback);
}

export function ok(value, message) {
  if (!value) fail(message, `The expression evaluated to a falsy value: ${inspect(value)}`);
}
export const equal = (a, b, m) => a == b || fail(m, `${inspect(a)} == ${inspect(b)}`);
export const notEqual = (a, b, m) => a != b || fail(m, `${inspect(a)} != ${inspect(b)}`);
export const strictEqual = (a, b, m) => Object.is(a, b) || fail(m, `${inspect(a)} === ${inspect(b)}`);
export const notStrictEqual = (a, b, m) => !Object.is(a, b) || fail(m, `${inspect(a)} !== ${inspect(b)}`);
export const deepStrictEqual = (a, b, m) => isDeepStrictEqual(a, b) || fail(m, 'Values are not deeply equal');
export const deepEqual = deepStrictEqual;
export const notDeepStrictEqual = (a, b, m) => !isDeepStrictEqual(a, b) || fail(m, 'Values are deeply equal');
export function throws(fn, expected, message) {
  try {
    fn();
  } catch (e) {
    if (typeof expected === 'function' && expected.prototype !== undefined && !(e instanceof expected)) throw e;
    return;
  }
  fail(typeof expected === 'string' ? expected : message, 'Missing expected exception.');
}
export { fail };

const assert = Object.assign((value, message) => ok(value, message), {
  ok, equal, notEqual, strictEqual, notStrictEqual, deepStrictEqual, deepEqual, notDeepStrictEqual, throws, fail,
  AssertionError,
});
assert.strict = assert;
export default assert;
