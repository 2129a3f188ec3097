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
