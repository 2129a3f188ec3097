// Componentizes one JavaScript ES module (the bundle the wasmfn build makes, or any fetch-style handler without
// imports) into a wasi:http component:
//   node componentize.mjs OUT.wasm MODULE.js
// The world is wasi:http/proxy plus wasi:cli/environment (read by the runtime module's `process.env`).
// StarlingMonkey in componentize-js 0.23 exports wasi:http/incoming-handler@0.2.10, and the world must name
// exactly that version. componentize-js imports @bytecodealliance/preview2-shim 0.17 at run time but lists it
// only as a dev dependency, so package.json pins it. jco ships the 0.2.12 WIT packages, which have the same interfaces, so they are
// relabelled to 0.2.10 in a temporary folder.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdtemp, readdir, readFile, writeFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';

const ENGINE_WASI_VERSION = '0.2.10';
const out = resolve(process.argv[2] ?? 'guest.wasm');
if (!process.argv[3]) {
  console.error('usage: node componentize.mjs OUT.wasm MODULE.js');
  process.exit(2);
}
const source = resolve(process.argv[3]);

const here = dirname(new URL(import.meta.url).pathname);
const builtin = join(here, 'node_modules', '@bytecodealliance', 'jco', 'lib', 'wit', 'builtin', '0.2.12');

const wit = await mkdtemp(join(tmpdir(), 'wasmfn-wit-'));
try {
  await mkdir(join(wit, 'deps'));
  for (const pkg of await readdir(builtin)) {
    const text = await readFile(join(builtin, pkg, 'package.wit'), 'utf8');
    await mkdir(join(wit, 'deps', pkg));
    await writeFile(join(wit, 'deps', pkg, 'package.wit'), text.replaceAll('@0.2.12', `@${ENGINE_WASI_VERSION}`));
  }
  await writeFile(
    join(wit, 'world.wit'),
    `package wasmfn:guest;\n\nworld handler {\n  include wasi:http/proxy@${ENGINE_WASI_VERSION};\n  import wasi:cli/environment@${ENGINE_WASI_VERSION};\n}\n`,
  );
  const { component } = await componentize({ sourcePath: source, witPath: wit, worldName: 'handler' });
  await writeFile(out, component);
  console.log(`wrote ${out} (${component.length} bytes)`);
} finally {
  await rm(wit, { recursive: true, force: true });
}
