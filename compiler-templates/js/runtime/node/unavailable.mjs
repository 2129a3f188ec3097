// Stands in for a Node.js module a function cannot have (`fs`, `os`, `http`, …): importing it works, so packages
// that only use it on paths a function never takes still bundle; using it throws, naming the module.
/** A stand-in for `name` whose use throws an error saying so and what to use instead (`hint`). */
export function unavailable(name, hint) {
  const error = (what) =>
    new Error(
      `wasmfn: the Node.js module \`${name}\` is not available in a function (\`${what}\` was used): ${hint}`,
    );
  const target = function () {};
  return new Proxy(target, {
    get(_, key) {
      if (key === '__esModule' || typeof key === 'symbol' || key === 'then' || key === 'prototype') return undefined;
      return new Proxy(function () {}, {
        apply() {
          throw error(`${name}.${String(key)}()`);
        },
        construct() {
          throw error(`new ${name}.${String(key)}()`);
        },
        get(_, inner) {
          if (typeof inner === 'symbol' || inner === 'then') return undefined;
          throw error(`${name}.${String(key)}.${String(inner)}`);
        },
      });
    },
    apply() {
      throw error(name);
    },
    ownKeys: () => Reflect.ownKeys(target),
  });
}
