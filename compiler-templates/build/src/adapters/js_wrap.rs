//! The JavaScript template's last steps in native code: componentize-js stubs the WASI imports the world lacks
//! and wraps the module as a component, both inside V8 (~4 s for a 13 MB engine in a fresh process). Stubbing
//! rewrites only imports and functions; Wizer's snapshot changes only memories, globals, data, exports and the
//! start function. So the engine is stubbed once (`componentize.mjs --core` caches it) and each build moves
//! its snapshot into that stubbed engine here, then wraps it with wit-component. Every assumption is checked
//! section by section; a module that breaks one is an error, and the caller falls back to componentize-js.

use std::collections::HashSet;
use wasm_encoder::{ExportKind, ExportSection, RawSection};
use wasmparser::{ExternalKind, Parser, Payload};

/// Sections of a core module: id (0 for custom) and contents, in order.
type Sections<'a> = Vec<(u8, &'a [u8])>;

const MEMORY: u8 = 5;
const GLOBAL: u8 = 6;
const EXPORT: u8 = 7;
const START: u8 = 8;
const DATA: u8 = 11;
const DATA_COUNT: u8 = 12;
/// What a Wizer snapshot replaces (exports and start are filtered instead).
const SNAPSHOT: [u8; 4] = [MEMORY, GLOBAL, DATA, DATA_COUNT];
/// What Wizer must leave alone: types, imports, functions, tables, elements, code.
const CODE: [u8; 6] = [1, 2, 3, 4, 9, 10];

fn sections(wasm: &[u8]) -> Result<Sections<'_>, String> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("not a core module: {e}"))?;
        if let Payload::Version { encoding: wasmparser::Encoding::Component, .. } = payload {
            return Err("a component, not a core module".into());
        }
        if let Some((id, range)) = payload.as_section() {
            out.push((id, &wasm[range]));
        }
    }
    Ok(out)
}

fn find<'a>(s: &Sections<'a>, id: u8) -> Option<&'a [u8]> {
    s.iter().find(|(i, _)| *i == id).map(|(_, b)| *b)
}

fn exports(contents: Option<&[u8]>) -> Result<Vec<(String, ExportKind, u32)>, String> {
    let Some(bytes) = contents else { return Ok(Vec::new()) };
    let reader = wasmparser::ExportSectionReader::new(wasmparser::BinaryReader::new(bytes, 0))
        .map_err(|e| format!("export section: {e}"))?;
    reader
        .into_iter()
        .map(|e| {
            let e = e.map_err(|e| format!("export section: {e}"))?;
            let kind = match e.kind {
                ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
                ExternalKind::Table => ExportKind::Table,
                ExternalKind::Memory => ExportKind::Memory,
                ExternalKind::Global => ExportKind::Global,
                ExternalKind::Tag => ExportKind::Tag,
            };
            Ok((e.name.to_string(), kind, e.index))
        })
        .collect()
}

/// The order sections must appear in (custom sections excepted).
fn rank(id: u8) -> u8 {
    match id {
        13 => 55, // tags sit between memories and globals
        DATA_COUNT => 95,
        id => id * 10,
    }
}

/// `stubbed` (the spliced engine with its WASI imports stubbed) carrying the snapshot that Wizer took of
/// `engine` into `pre_initialised`.
pub(crate) fn transplant(engine: &[u8], stubbed: &[u8], pre_initialised: &[u8]) -> Result<Vec<u8>, String> {
    let (e, s, p) = (sections(engine)?, sections(stubbed)?, sections(pre_initialised)?);
    for id in SNAPSHOT {
        if find(&e, id) != find(&s, id) {
            return Err(format!("stubbing changed section {id}, which the snapshot replaces"));
        }
    }
    for id in CODE {
        if find(&e, id) != find(&p, id) {
            return Err(format!("pre-initialisation changed section {id}, which it must not"));
        }
    }
    let engine_exports: HashSet<String> = exports(find(&e, EXPORT))?.into_iter().map(|x| x.0).collect();
    let kept: HashSet<String> = exports(find(&p, EXPORT))?.into_iter().map(|x| x.0).collect();
    if let Some(added) = kept.difference(&engine_exports).next() {
        return Err(format!("pre-initialisation added the export {added:?}"));
    }
    let mut export_section = ExportSection::new();
    for (name, kind, index) in exports(find(&s, EXPORT))? {
        if kept.contains(&name) {
            export_section.export(&name, kind, index);
        }
    }

    let mut module = wasm_encoder::Module::new();
    let mut pending: Vec<(u8, &[u8])> =
        p.iter().filter(|(id, _)| SNAPSHOT.contains(id)).map(|(id, b)| (*id, *b)).collect();
    // Emits the snapshot's sections that belong before a section of rank `rank_of`.
    let mut emit_pending_before = |module: &mut wasm_encoder::Module, rank_of: u8| {
        pending.retain(|(pid, bytes)| {
            let due = rank(*pid) < rank_of;
            if due {
                module.section(&RawSection { id: *pid, data: bytes });
            }
            !due
        });
    };
    for (id, bytes) in &s {
        match *id {
            0 => {
                module.section(&RawSection { id: 0, data: bytes });
            }
            // The snapshot's own take its place (with any the stubbed engine lacks that rank before it).
            id if SNAPSHOT.contains(&id) => emit_pending_before(&mut module, rank(id) + 1),
            EXPORT => {
                emit_pending_before(&mut module, rank(EXPORT));
                module.section(&export_section);
            }
            START if find(&p, START).is_none() => {}
            id => {
                emit_pending_before(&mut module, rank(id));
                module.section(&RawSection { id, data: bytes });
            }
        }
    }
    emit_pending_before(&mut module, u8::MAX);
    Ok(module.finish())
}

/// Wraps a core module that imports `wasi_snapshot_preview1` as a component (the reactor adapter), as
/// componentize-js does, with the same producers metadata.
pub(crate) fn component(core: &[u8], adapter: &[u8], componentize_js: &str) -> Result<Vec<u8>, String> {
    let wrapped = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(core)
        .and_then(|e| e.adapter("wasi_snapshot_preview1", adapter))
        .and_then(|mut e| e.encode())
        .map_err(|e| format!("{e:#}"))?;
    let mut meta = wasm_metadata::AddMetadata::default();
    meta.language = vec![("JavaScript".into(), String::new())];
    meta.processed_by = vec![("ComponentizeJS".into(), componentize_js.into())];
    meta.to_wasm(&wrapped).map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine with an import the world lacks (`fs.open`), an initialiser export and a data segment.
    const ENGINE: &str = r#"(module
        (import "fs" "open" (func $open (result i32)))
        (import "env" "log" (func $log (param i32)))
        (memory (export "memory") 1)
        (global $heap (mut i32) (i32.const 16))
        (func $init (export "componentize.wizer") (global.set $heap (call $open)))
        (func (export "run") (result i32) (call $log (i32.const 1)) (global.get $heap))
        (data (i32.const 0) "engine")
        (@custom "name-ish" "kept"))"#;
    /// The engine as stubbing makes it: the import is a local function now (indices shift).
    const STUBBED: &str = r#"(module
        (import "env" "log" (func $log (param i32)))
        (memory (export "memory") 1)
        (global $heap (mut i32) (i32.const 16))
        (func $init (export "componentize.wizer") (global.set $heap (call $open)))
        (func (export "run") (result i32) (call $log (i32.const 1)) (global.get $heap))
        (func $open (result i32) unreachable)
        (data (i32.const 0) "engine")
        (@custom "name-ish" "kept"))"#;
    /// The engine after Wizer: a snapshot of memory and globals, the initialiser gone.
    const PRE: &str = r#"(module
        (import "fs" "open" (func $open (result i32)))
        (import "env" "log" (func $log (param i32)))
        (memory (export "memory") 2)
        (global $heap (mut i32) (i32.const 4096))
        (func $init (global.set $heap (call $open)))
        (func (export "run") (result i32) (call $log (i32.const 1)) (global.get $heap))
        (data (i32.const 0) "snapshot of the heap")
        (data (i32.const 70000) "more")
        (@custom "name-ish" "kept"))"#;
    /// What stubbing the pre-initialised module gives.
    const EXPECTED: &str = r#"(module
        (import "env" "log" (func $log (param i32)))
        (memory (export "memory") 2)
        (global $heap (mut i32) (i32.const 4096))
        (func $init (global.set $heap (call $open)))
        (func (export "run") (result i32) (call $log (i32.const 1)) (global.get $heap))
        (func $open (result i32) unreachable)
        (data (i32.const 0) "snapshot of the heap")
        (data (i32.const 70000) "more")
        (@custom "name-ish" "kept"))"#;

    fn wasm(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    #[test]
    fn the_snapshot_moves_into_the_stubbed_engine() {
        let out = transplant(&wasm(ENGINE), &wasm(STUBBED), &wasm(PRE)).unwrap();
        assert_eq!(out, wasm(EXPECTED));
        wasmparser::Validator::new().validate_all(&out).unwrap();
    }

    #[test]
    fn broken_assumptions_are_errors_not_wrong_modules() {
        let (engine, stubbed, pre) = (wasm(ENGINE), wasm(STUBBED), wasm(PRE));
        // Stubbing that touched the data the snapshot replaces.
        let bad_stub = wasm(&STUBBED.replace(r#""engine")"#, r#""stubbed")"#));
        let err = transplant(&engine, &bad_stub, &pre).unwrap_err();
        assert!(err.contains("stubbing changed section 11"), "{err}");
        // Pre-initialisation that changed code.
        let bad_pre = wasm(&PRE.replace("(i32.const 1)", "(i32.const 2)"));
        let err = transplant(&engine, &stubbed, &bad_pre).unwrap_err();
        assert!(err.contains("pre-initialisation changed section 10"), "{err}");
        // Or added an export.
        let bad_pre = wasm(&PRE.replace("(func $init ", r#"(func $init (export "new") "#));
        let err = transplant(&engine, &stubbed, &bad_pre).unwrap_err();
        assert!(err.contains(r#"added the export "new""#), "{err}");
        // A component is not a core module.
        let err = transplant(&wasm("(component)"), &stubbed, &pre).unwrap_err();
        assert!(err.contains("a component"), "{err}");
    }
}
