use super::*;
use std::fs;

fn builder() -> (tempfile::TempDir, Builder) {
    let cache = tempfile::tempdir().unwrap();
    let b = Builder::new(&default_templates_dir(), cache.path()).unwrap();
    (cache, b)
}

#[test]
fn the_repository_templates_load() {
    let (_cache, b) = builder();
    let names: Vec<_> = b.templates().iter().map(|t| t.name().to_string()).collect();
    assert_eq!(names, ["js", "python", "rust"]);
    let err = b.template("cobol").unwrap_err().to_string();
    assert!(err.contains("unknown template `cobol`") && err.contains("js, python, rust"), "{err}");
}

#[test]
fn template_toml_rejects_unknown_keys_and_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("x");
    fs::create_dir(&t).unwrap();
    let base = "name = \"x\"\ndescription = \"d\"\nruntime = \"r\"\nhandler = \"h\"\nsources = [\"*\"]\n";
    fs::write(t.join("template.toml"), format!("{base}adapter = \"js\"\ncolour = \"red\"\n")).unwrap();
    let err = Builder::new(dir.path(), dir.path()).unwrap_err().to_string();
    assert!(err.contains("colour"), "{err}");
    fs::write(t.join("template.toml"), format!("{base}adapter = \"fortran\"\n")).unwrap();
    let err = Builder::new(dir.path(), dir.path()).unwrap_err().to_string();
    assert!(err.contains("unknown adapter `fortran`"), "{err}");
}

#[test]
fn a_missing_tool_is_named_with_its_install_command() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("x");
    fs::create_dir(&t).unwrap();
    fs::write(
        t.join("template.toml"),
        "name = \"x\"\ndescription = \"d\"\nruntime = \"r\"\nhandler = \"h\"\nsources = [\"*\"]\nadapter = \"js\"\n\
         [[toolchain]]\nname = \"the frobnicator\"\nfile = \"bin/frob\"\ninstall = \"make -C {template_dir} frob\"\n\
         [[toolchain]]\nname = \"never reached\"\ncommand = [\"true\"]\ninstall = \"-\"\n",
    )
    .unwrap();
    let b = Builder::new(dir.path(), dir.path()).unwrap();
    let src = tempfile::tempdir().unwrap();
    let err = b.build(src.path(), "x", true, &Progress::quiet()).unwrap_err();
    assert_eq!(err.kind(), "missing_toolchain");
    let msg = err.to_string();
    assert!(msg.contains("the frobnicator") && msg.contains(&format!("make -C {} frob", t.display())), "{msg}");
}

#[test]
fn sources_skip_dependencies_and_build_output() {
    let (_cache, b) = builder();
    let src = tempfile::tempdir().unwrap();
    for f in ["handler.js", "lib/util.mjs", "package.json", "node_modules/dep/index.js", ".git/x.js", "notes.txt"] {
        let p = src.path().join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, f).unwrap();
    }
    let files = b.source_files(src.path(), "js").unwrap();
    let files: Vec<_> = files.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    assert_eq!(files, ["handler.js", "lib/util.mjs", "package.json"]);
}

#[test]
fn the_cache_key_follows_sources_tools_and_template() {
    let (_cache, b) = builder();
    let t = b.template("python").unwrap();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("handler.py"), "def handler(e, c): return 1\n").unwrap();
    let k1 = cache::key(t, "tools-1", src.path()).unwrap();
    assert_eq!(k1, cache::key(t, "tools-1", src.path()).unwrap());
    fs::write(src.path().join("README.md"), "not a source").unwrap();
    assert_eq!(k1, cache::key(t, "tools-1", src.path()).unwrap(), "a non-source file changed the key");
    assert_ne!(k1, cache::key(t, "tools-2", src.path()).unwrap(), "a tool version did not change the key");
    fs::write(src.path().join("handler.py"), "def handler(e, c): return 2\n").unwrap();
    let k2 = cache::key(t, "tools-1", src.path()).unwrap();
    assert_ne!(k1, k2);
    fs::rename(src.path().join("handler.py"), src.path().join("main.py")).unwrap();
    assert_ne!(k2, cache::key(t, "tools-1", src.path()).unwrap(), "a rename did not change the key");
}

#[test]
fn a_corrupt_cache_entry_is_a_miss() {
    let cache = tempfile::tempdir().unwrap();
    let built = cache.path().join("c.wasm");
    fs::write(&built, b"\0asm component bytes").unwrap();
    let stored = cache::store(cache.path(), "k", &built).unwrap();
    assert_eq!(cache::lookup(cache.path(), "k").unwrap().digest, stored.digest);
    fs::write(&stored.path, b"tampered").unwrap();
    assert!(cache::lookup(cache.path(), "k").is_none());
}

#[test]
fn scaffolds_substitute_the_name_and_refuse_to_overwrite() {
    let (_cache, b) = builder();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("my-fn");
    for template in ["rust", "js", "python"] {
        let dest = dest.join(template);
        let files = b.scaffold(template, "my-fn", &dest).unwrap();
        assert!(files.iter().any(|f| f.ends_with("function.yaml")), "{template}: {files:?}");
        assert!(files.iter().any(|f| f.ends_with("request.http")), "{template}: {files:?}");
        let manifest = fs::read_to_string(dest.join("function.yaml")).unwrap();
        let f = wasmfn_api::Function::from_yaml(&manifest).unwrap();
        assert_eq!(f.metadata.name, "my-fn");
        assert_eq!(f.spec.build.unwrap().template, template);
        for file in &files {
            let text = fs::read_to_string(file).unwrap();
            assert!(!text.contains("{{"), "{}: unsubstituted placeholder", file.display());
        }
        let err = b.scaffold(template, "my-fn", &dest).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }
    let cargo = fs::read_to_string(dest.join("rust/Cargo.toml")).unwrap();
    let sdk = cargo.lines().find(|l| l.starts_with("wasmfn-sdk")).unwrap();
    assert!(sdk.contains("/sdk\"") && !sdk.contains(".."), "{sdk}");
}

/// The sections of a core module as comparable values: re-encoding the same module may change bytes (LEB
/// widths, item grouping) but never these.
fn module_items(wasm: &[u8]) -> Vec<String> {
    use wasmparser::Payload::*;
    let mut items = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.unwrap() {
            TypeSection(r) => items.extend(r.into_iter().map(|t| format!("type {:?}", t.unwrap()))),
            ImportSection(r) => items.extend(r.into_imports().map(|i| format!("import {:?}", i.unwrap()))),
            FunctionSection(r) => items.extend(r.into_iter().map(|f| format!("func {}", f.unwrap()))),
            MemorySection(r) => items.extend(r.into_iter().map(|m| format!("memory {:?}", m.unwrap()))),
            GlobalSection(r) => items.extend(r.into_iter().map(|g| {
                let g = g.unwrap();
                let init: Vec<_> =
                    g.init_expr.get_operators_reader().into_iter().map(|o| format!("{:?}", o.unwrap())).collect();
                format!("global {:?} {init:?}", g.ty)
            })),
            ExportSection(r) => items.extend(r.into_iter().map(|e| format!("export {:?}", e.unwrap()))),
            StartSection { func, .. } => items.push(format!("start {func}")),
            ElementSection(r) => items.extend(r.into_iter().map(|e| {
                let e = e.unwrap();
                let elems = match e.items {
                    wasmparser::ElementItems::Functions(f) => {
                        format!("{:?}", f.into_iter().collect::<Result<Vec<_>, _>>().unwrap())
                    }
                    wasmparser::ElementItems::Expressions(t, _) => format!("expressions of {t:?}"),
                };
                format!("elem {elems}")
            })),
            CodeSectionEntry(body) => items.push(format!("code {:?}", &wasm[body.range()])),
            DataSection(r) => items.extend(r.into_iter().map(|d| {
                let d = d.unwrap();
                let at = match d.kind {
                    wasmparser::DataKind::Active { memory_index, offset_expr } => {
                        let ops: Vec<_> = offset_expr
                            .get_operators_reader()
                            .into_iter()
                            .map(|o| format!("{:?}", o.unwrap()))
                            .collect();
                        format!("{memory_index} {ops:?}")
                    }
                    wasmparser::DataKind::Passive => "passive".into(),
                };
                format!("data {at} {:?}", d.data)
            })),
            CustomSection(c) => items.push(format!("custom {} {:?}", c.name(), c.data())),
            _ => {}
        }
    }
    items
}

/// The JavaScript build moves Wizer's snapshot into an engine stubbed once; the result must be what
/// componentize-js gets by stubbing the snapshot itself, item for item (real toolchain, real engine).
#[test]
fn the_js_snapshot_transplant_equals_componentize_js_stubbing() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("handler.mjs");
    fs::write(&source, "let n = 40 + 2;\nexport default { fetch() { return new Response(`n=${n}`); } };\n").unwrap();
    let template = default_templates_dir().join("js");
    let core = dir.path().join("core");
    let status = std::process::Command::new("node")
        .arg(template.join("componentize.mjs"))
        .arg("--core")
        .arg(&core)
        .arg(&source)
        .env("WASMFN_JS_CACHE", dir.path().join("cache"))
        .env("WASMFN_JS_REFERENCE", "1")
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let read = |name: &str| fs::read(core.join(name)).unwrap();
    let ours = crate::adapters::js_wrap::transplant(
        &read("engine.wasm"),
        &read("engine-stubbed.wasm"),
        &read("pre-initialised.wasm"),
    )
    .unwrap();
    let (ours, theirs) = (module_items(&ours), module_items(&read("reference-core.wasm")));
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert!(a == b, "first difference:\n ours: {:.300}\ntheirs: {:.300}", a, b);
    }
}
