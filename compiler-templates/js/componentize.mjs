// Componentizes one JavaScript ES module (the bundle the wasmfn build makes, or any fetch-style handler without
// imports) into a wasi:http component:
//   node componentize.mjs OUT.wasm MODULE.js      the component, by componentize-js 0.23's own steps
//   node componentize.mjs --core DIR MODULE.js    only the steps that depend on MODULE (the wasmfn build)
// The world is wasi:http/proxy plus wasi:cli/environment (read by the runtime module's `process.env`).
//
// componentize-js 0.23's pipeline: splice the WIT bindings into StarlingMonkey, pre-initialise it with the
// module under Wizer, check the initialisation, stub the WASI imports the world lacks, wrap the core module as a
// component. Splicing and stubbing run in the splicer, a Rust program compiled to Wasm that V8 runs at baseline
// speed in a fresh process: ~4 s each for a 13 MB engine. Neither depends on the user's module, so:
// - the spliced engine is cached in $WASMFN_JS_CACHE (when set), keyed by the engine, the world and features;
// - with --core, the engine is stubbed once too (DIR/engine-stubbed.wasm, beside DIR/engine.wasm), and only
//   Wizer and the check run per build (DIR/pre-initialised.wasm). The wasmfn build then moves the snapshot
//   (memory, globals, data) into the stubbed engine and wraps it (wit-component): the same module stubbing the
//   snapshot would give, checked there section by section (and, in its tests, against DIR/reference-core.wasm,
//   which WASMFN_JS_REFERENCE=1 adds: componentize-js's own stubbing of the pre-initialised module).
//
// StarlingMonkey in componentize-js 0.23 exports wasi:http/incoming-handler@0.2.10, and the world must name
// exactly that version. componentize-js imports @bytecodealliance/preview2-shim 0.17 at run time but lists it
// only as a dev dependency, so package.json pins it. jco ships the 0.2.12 WIT packages, which have the same
// interfaces, so they are relabelled to 0.2.10 in a temporary folder.
import { mkdtemp, readdir, readFile, writeFile, mkdir, rm, rename } from 'node:fs/promises';
import { createHash, randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve, relative } from 'node:path';
import { tmpdir } from 'node:os';

const ENGINE_WASI_VERSION = '0.2.10';
/** componentize-js's default features; `fetch-event` is dropped for modules exporting `incomingHandler`. */
const FEATURES = ['stdio', 'random', 'clocks', 'http', 'fetch-event'];

const coreOnly = process.argv[2] === '--core';
const args = process.argv.slice(coreOnly ? 3 : 2);
if (args.length !== 2) {
  console.error('usage: node componentize.mjs OUT.wasm MODULE.js | node componentize.mjs --core DIR MODULE.js');
  process.exit(2);
}
const out = resolve(args[0]);
const source = resolve(args[1]);
const here = dirname(new URL(import.meta.url).pathname);
const cjsDir = join(here, 'node_modules', '@bytecodealliance', 'componentize-js');
const builtin = join(here, 'node_modules', '@bytecodealliance', 'jco', 'lib', 'wit', 'builtin', '0.2.12');

/** Writes `bytes` to `path` through a temporary file, so a concurrent reader never sees half of it. */
async function writeAtomic(path, bytes) {
  const tmp = `${path}.tmp-${randomUUID()}`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}

/** The world's WIT folder; returns its path and the text of every file (part of the splice key). */
async function writeWorld(dir) {
  let text = '';
  await mkdir(join(dir, 'deps'));
  for (const pkg of (await readdir(builtin)).sort()) {
    const wit = (await readFile(join(builtin, pkg, 'package.wit'), 'utf8')).replaceAll('@0.2.12', `@${ENGINE_WASI_VERSION}`);
    await mkdir(join(dir, 'deps', pkg));
    await writeFile(join(dir, 'deps', pkg, 'package.wit'), wit);
    text += `${pkg}\n${wit}\n`;
  }
  const world = `package wasmfn:guest;\n\nworld handler {\n  include wasi:http/proxy@${ENGINE_WASI_VERSION};\n  import wasi:cli/environment@${ENGINE_WASI_VERSION};\n}\n`;
  await writeFile(join(dir, 'world.wit'), world);
  return text + world;
}

let splicerModule;
async function splicer() {
  splicerModule ??= (await import(join(cjsDir, 'lib', 'spidermonkey-embedding-splicer.js'))).splicer;
  return splicerModule;
}

/** The engine with the world's bindings spliced in, from the cache when an earlier build made it; with
 * `stubbed`, also that engine with the world's missing WASI imports stubbed. */
async function splice(engine, features, witPath, witText, version, stubbed) {
  const key = createHash('sha256')
    .update(`componentize-js ${version}\n${features.join(',')}\n${witText}\n`)
    .update(engine)
    .digest('hex')
    .slice(0, 32);
  const cacheRoot = process.env.WASMFN_JS_CACHE;
  const dir = cacheRoot && join(cacheRoot, key);
  if (dir) {
    try {
      const meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8'));
      const wasm = await readFile(join(dir, 'engine.wasm'));
      const stub = stubbed ? await readFile(join(dir, 'engine-stubbed.wasm')) : undefined;
      const sha = (b) => createHash('sha256').update(b).digest('hex');
      if (sha(wasm) === meta.sha256 && (!stubbed || sha(stub) === meta.stubbed)) {
        return { ...meta, wasm, stubbed: stub, cached: true };
      }
    } catch {
      // Absent or unreadable: splice again below and replace it.
    }
  }
  const spliced = (await splicer()).spliceBindings(engine, features, undefined, witPath, 'handler', false);
  const result = {
    wasm: Buffer.from(spliced.wasm),
    jsBindings: spliced.jsBindings,
    exports: spliced.exports,
    imports: spliced.imports,
    cached: false,
  };
  // Always made on a miss (the splicer is warm now), so that a later --core build finds it.
  result.stubbed = Buffer.from((await splicer()).stubWasi(result.wasm, features, undefined, witPath, 'handler'));
  if (dir) {
    try {
      await mkdir(dir, { recursive: true });
      await writeAtomic(join(dir, 'engine.wasm'), result.wasm);
      await writeAtomic(join(dir, 'engine-stubbed.wasm'), result.stubbed);
      const sha = (b) => createHash('sha256').update(b).digest('hex');
      const meta = {
        jsBindings: result.jsBindings,
        exports: result.exports,
        imports: result.imports,
        sha256: sha(result.wasm),
        stubbed: sha(result.stubbed),
      };
      await writeAtomic(join(dir, 'meta.json'), JSON.stringify(meta));
    } catch (e) {
      console.error(`note: could not cache the spliced engine in ${dir}: ${e.message}`);
    }
  }
  return result;
}

/** Wizer's error output without its own preamble (as componentize-js trims it). */
function wizerError(stderr) {
  const cause = 'Error: the `componentize.wizer` function trapped\n\nCaused by:';
  const output = `${stderr}`;
  const start = output.indexOf(cause);
  const exit = output.indexOf('Exited with i32 exit status');
  if (start === -1 || exit === -1) return output;
  return `${output.substring(0, start)}${output.substring(output.indexOf('\n', exit + 1))}`.trim();
}

/** Runs the pre-initialised module's `check_init` in V8, as componentize-js does, to report a failed start. */
async function checkInit(bin, initializerPath) {
  let stderr = '';
  let memory;
  const imports = {
    wasi_snapshot_preview1: {
      fd_write(fd, iovs, iovsLen, nwritten) {
        if (fd !== 2) return 0;
        const view = new DataView(memory.buffer);
        let written = 0;
        for (let i = 0; i < iovsLen; i++) {
          const ptr = view.getUint32(iovs + i * 8, true);
          const len = view.getUint32(iovs + 4 + i * 8, true);
          stderr += new TextDecoder().decode(new Uint8Array(memory.buffer, ptr, len));
          written += len;
        }
        view.setUint32(nwritten, written, true);
        return 1;
      },
    },
  };
  const module = await WebAssembly.compile(bin);
  for (const { module: m, name } of WebAssembly.Module.imports(module)) {
    imports[m] ??= {};
    imports[m][name] ??= () => {
      throw new Error(`Internal error: unexpected call to "${name}" during Wasm verification`);
    };
  }
  const { exports } = await WebAssembly.instantiate(module, imports);
  memory = exports.memory;
  const status = exports.check_init();
  const errors = { 1: 'Unable to extract expected exports list', 2: 'Unable to parse the core ABI export types' };
  if (status === 0) return;
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(new RegExp(`${initializerPath}[:\\d]* ?`), ''))
    .join('\n')
    .trim();
  throw new Error(`${errors[status] ?? `Unknown error during initialization: ${status}`}${lines ? `\n${lines}` : ''}`);
}

/** componentize-js's last steps: stub the WASI imports the world lacks, wrap the module, add metadata. */
async function wrap(wizened, features, wit, version) {
  const core = (await splicer()).stubWasi(wizened, features, undefined, wit, 'handler');
  const jco = await import('@bytecodealliance/jco');
  const adapter = await readFile(jco.preview1AdapterReactorPath());
  const component = await jco.metadataAdd(
    await jco.componentNew(core, [['wasi_snapshot_preview1', adapter]], false),
    [['language', [['JavaScript', '']]], ['processed-by', [['ComponentizeJS', version]]]],
  );
  return component;
}

const work = await mkdtemp(join(tmpdir(), 'wasmfn-js-'));
try {
  const started = Date.now();
  const { version } = JSON.parse(await readFile(join(cjsDir, 'package.json'), 'utf8'));
  const wit = join(work, 'wit');
  await mkdir(wit);
  const witText = await writeWorld(wit);

  const jsSource = await readFile(source, 'utf8');
  const features = [...FEATURES];
  const oxc = (await import('oxc-parser')).default;
  const parsed = await oxc.parseAsync(source, jsSource);
  if (parsed.errors.length > 0) throw new Error(`failed to parse JS source, encountered [${parsed.errors.length}] errors`);
  const exported = parsed.module.staticExports.flatMap((e) => e.entries.map((x) => x.exportName.name));
  if (exported.includes('incomingHandler')) features.splice(features.indexOf('fetch-event'), 1);

  const engine = await readFile(join(cjsDir, 'lib', 'starlingmonkey_embedding.wasm'));
  const spliced = await splice(engine, features, wit, witText, version, coreOnly);
  const spliceMs = Date.now() - started;

  // Wizer runs the engine with the module, exactly as componentize-js runs it.
  const sources = join(work, 'sources');
  await mkdir(sources);
  const input = join(work, 'in.wasm');
  const output = join(work, 'out.wasm');
  await writeFile(input, spliced.wasm);
  const initializerPath = join(sources, 'initializer.js');
  await writeFile(initializerPath, spliced.jsBindings);
  const env = {
    DEBUG: '',
    SOURCE_NAME: 'source.js',
    EXPORT_CNT: String(spliced.exports.length),
    FEATURE_CLOCKS: features.includes('clocks') ? '1' : '',
    IMPORT_CNT: String(spliced.imports.length),
  };
  for (const [i, [name, e]] of spliced.exports.entries()) {
    env[`EXPORT${i}_NAME`] = name;
    env[`EXPORT${i}_ARGS`] = (e.paramptr ? '*' : '') + e.params.join(',');
    env[`EXPORT${i}_RET`] = (e.retptr ? '*' : '') + (e.ret || '');
    env[`EXPORT${i}_RETSIZE`] = String(e.retsize);
  }
  for (const [i, imp] of spliced.imports.entries()) {
    env[`IMPORT${i}_NAME`] = imp[1];
    env[`IMPORT${i}_ARGCNT`] = String(imp[2]);
  }
  let prefix = dirname(source);
  if (prefix.startsWith(process.cwd())) prefix = process.cwd();
  const sourcePath = relative(prefix, source);
  const wizer = (await import('@bytecodealliance/wizer')).default;
  const run = spawnSync(
    wizer,
    ['--allow-wasi', '--init-func', 'componentize.wizer', `--dir=${sources}`, `--mapdir=/::${prefix}`,
      '--wasm-bulk-memory=true', '--inherit-env=true', `-o=${output}`, input],
    {
      stdio: [null, 'inherit', 'pipe'],
      env,
      input: `--initializer-script-path ${initializerPath} --strip-path-prefix ${prefix}/ ${sourcePath}`,
      encoding: 'utf-8',
    },
  );
  if (run.status !== 0 || run.signal) {
    let err = wizerError(run.stderr);
    if (run.signal) err += `\nProcess was killed by signal: ${run.signal}`;
    if (run.error) err += `\nProcess error: ${run.error.message}`;
    throw new Error(`Failed to initialize component (wizer (${wizer})):\n${err}`);
  }
  // The module's own warnings at pre-initialisation (process.env read while loading) reach the build output.
  for (const line of `${run.stderr ?? ''}`.split('\n')) if (line.startsWith('warning: ')) console.error(line);
  const wizened = await readFile(output);
  await checkInit(wizened, initializerPath);
  const initMs = Date.now() - started - spliceMs;
  if (coreOnly) {
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'pre-initialised.wasm'), wizened);
    await writeFile(join(out, 'engine.wasm'), spliced.wasm);
    await writeFile(join(out, 'engine-stubbed.wasm'), spliced.stubbed);
    if (process.env.WASMFN_JS_REFERENCE) {
      // What componentize-js itself would wrap: the wasmfn build's tests compare it with their own.
      const reference = (await splicer()).stubWasi(wizened, features, undefined, wit, 'handler');
      await writeFile(join(out, 'reference-core.wasm'), reference);
    }
    console.log(`pre-initialised: splice ${spliceMs} ms${spliced.cached ? ' (cached)' : ''}, wizer ${initMs} ms`);
  } else {
    const component = await wrap(wizened, features, wit, version);
    await writeFile(out, component);
    const wrapMs = Date.now() - started - spliceMs - initMs;
    console.log(
      `wrote ${out} (${component.length} bytes): splice ${spliceMs} ms${spliced.cached ? ' (cached)' : ''}, ` +
        `pre-initialise ${initMs} ms, wrap ${wrapMs} ms`,
    );
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
