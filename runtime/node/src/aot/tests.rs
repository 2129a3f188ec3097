use super::*;

fn cache(dir: &Path) -> (AotCache, Metrics) {
    let metrics = Metrics::new();
    (AotCache::new(dir, &Engine::default(), metrics.clone(), None), metrics)
}

fn keyed(dir: &Path, key: u8, metrics: &Metrics) -> AotCache {
    AotCache::new(dir, &Engine::default(), metrics.clone(), Some(AotKey::new([key; 32])))
}

fn component(wat: &str) -> (Vec<u8>, Digest) {
    let wasm = wat::parse_str(wat).unwrap();
    let digest = Digest::of(&wasm);
    (wasm, digest)
}

/// Loads through `aot`, saying whether the component had to be compiled.
fn load(aot: &AotCache, digest: &Digest, wasm: &[u8]) -> (Outcome, bool) {
    let mut compiled = false;
    let outcome = aot
        .load_or_compile(digest, || {
            compiled = true;
            Ok(wasm.to_vec())
        })
        .unwrap()
        .1;
    (outcome, compiled)
}

#[test]
fn hit_after_miss_and_an_in_place_edit_is_caught_in_the_same_process() {
    let dir = tempfile::tempdir().unwrap();
    let (aot, metrics) = cache(dir.path());
    let (wasm, digest) = component("(component (core module))");
    let compile = || Ok(wasm.clone());
    assert_eq!(aot.load_or_compile(&digest, compile).unwrap().1, Outcome::Miss);
    assert_eq!(aot.load_or_compile(&digest, compile).unwrap().1, Outcome::Hit);
    assert_eq!(aot.load_or_compile(&digest, compile).unwrap().1, Outcome::Hit);
    let sum = std::fs::read_to_string(aot.paths(&digest).sum).unwrap();
    assert!(sum.starts_with("wasmfn-aot/2 blake3 "), "without a key, a version 2 checksum: {sum}");

    // Rewrite the entry in place with different bytes of the same length: the file's identity changes,
    // so the checksum is verified again and fails.
    let code = aot.paths(&digest).code;
    let mut bytes = std::fs::read(&code).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&code, &bytes).unwrap();
    assert_eq!(aot.load_or_compile(&digest, compile).unwrap().1, Outcome::Recovered);
    assert_eq!(metrics.aot_corrupt.get(), 1);
    assert_eq!(aot.load_or_compile(&digest, compile).unwrap().1, Outcome::Hit);

    // In a new process (nothing verified yet), an entry without its checksum file is not trusted. It is a
    // miss, not a corrupt entry: another process sharing the cache may be between writing code and checksum.
    std::fs::remove_file(aot.paths(&digest).sum).unwrap();
    let fresh = AotCache::new(dir.path(), &Engine::default(), metrics.clone(), None);
    assert_eq!(fresh.load_or_compile(&digest, compile).unwrap().1, Outcome::Miss);
    assert_eq!(metrics.aot_corrupt.get(), 1, "not counted as corrupt");
    assert_eq!(fresh.load_or_compile(&digest, compile).unwrap().1, Outcome::Hit);
}

/// Someone who can write the directory but not read the key plants native code of their own under a
/// component's digest, with every tag they can compute: none of it is loaded.
#[test]
fn forged_entries_without_the_key_are_refused_and_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let aot = keyed(dir.path(), 1, &metrics);
    let (wasm, digest) = component("(component (core module))");
    let (other_wasm, other) = component("(component (core module (func)))");
    let planted = Engine::default().precompile_component(&other_wasm).unwrap();
    let p = aot.paths(&digest);
    let engine = aot.engine_key;
    let forgeries = [
        // The right checksum for these bytes, in the current format and in version 1.
        (tag::compute(None, &digest, engine, &planted), false),
        (tag::compute_v1(&digest, &planted), true),
        // An HMAC with another key, and a genuine entry of another component copied onto this one's path.
        (tag::compute(Some(&AotKey::new([2; 32])), &digest, engine, &planted), false),
        (tag::compute(Some(&AotKey::new([1; 32])), &other, engine, &planted), false),
    ];
    for (i, (forged, v1)) in forgeries.into_iter().enumerate() {
        std::fs::create_dir_all(aot.dir()).unwrap();
        std::fs::write(&p.code, &planted).unwrap();
        std::fs::write(if v1 { &p.v1 } else { &p.sum }, forged).unwrap();
        assert!(!aot.verifies(&digest), "forgery {i}");
        assert_eq!(load(&aot, &digest, &wasm), (Outcome::Recovered, true), "forgery {i}: compiled, not loaded");
        assert_eq!(metrics.aot_corrupt.get(), i as u64 + 1, "forgery {i} is reported");
        assert_ne!(std::fs::read(&p.code).unwrap(), planted, "forgery {i}: replaced");
        assert!(!p.v1.exists() && aot.verifies(&digest));
        aot.remove(&digest);
    }
}

#[test]
fn keyed_entries_round_trip_and_tampered_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let (wasm, digest) = component("(component (core module))");
    let writer = keyed(dir.path(), 1, &metrics);
    assert_eq!(load(&writer, &digest, &wasm), (Outcome::Miss, true));
    let p = writer.paths(&digest);
    assert!(std::fs::read_to_string(&p.sum).unwrap().starts_with("wasmfn-aot/2 hmac-sha256 "));

    // Another process with the same key loads it (verifying the HMAC: nothing is known to it yet).
    let reader = keyed(dir.path(), 1, &metrics);
    assert!(reader.contains(&digest) && reader.verifies(&digest));
    assert_eq!(load(&reader, &digest, &wasm), (Outcome::Hit, false));

    // A flipped bit in the code: refused by a process that verified it before, and by a new one.
    let mut bytes = std::fs::read(&p.code).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&p.code, &bytes).unwrap();
    assert!(!keyed(dir.path(), 1, &metrics).verifies(&digest));
    assert_eq!(load(&reader, &digest, &wasm), (Outcome::Recovered, true));
    assert_eq!(load(&keyed(dir.path(), 1, &metrics), &digest, &wasm), (Outcome::Hit, false), "written again");

    // Another key, or none, cannot check the entry: it is compiled again (and replaced).
    assert_eq!(load(&keyed(dir.path(), 9, &metrics), &digest, &wasm), (Outcome::Recovered, true));
    let unkeyed = AotCache::new(dir.path(), &Engine::default(), metrics.clone(), None);
    assert_eq!(load(&unkeyed, &digest, &wasm), (Outcome::Recovered, true));
    assert_eq!(metrics.aot_corrupt.get(), 3);
}

#[test]
fn version_1_entries_are_read_without_a_key_and_refused_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let (wasm, digest) = component("(component (core module))");
    let (aot, metrics) = cache(dir.path());
    // An entry as nodes before format version 2 wrote it: `<hex>.cwasm` and `<hex>.b3`.
    let p = aot.paths(&digest);
    let code = Engine::default().precompile_component(&wasm).unwrap();
    std::fs::create_dir_all(aot.dir()).unwrap();
    std::fs::write(&p.code, &code).unwrap();
    std::fs::write(&p.v1, tag::compute_v1(&digest, &code)).unwrap();
    assert!(aot.contains(&digest) && aot.verifies(&digest));
    assert_eq!(load(&aot, &digest, &wasm), (Outcome::Hit, false), "read as it is");
    assert_eq!(metrics.aot_corrupt.get(), 0);

    // A damaged version 1 entry is caught like a damaged current one.
    let mut bad = code.clone();
    *bad.last_mut().unwrap() ^= 1;
    std::fs::write(&p.code, &bad).unwrap();
    assert_eq!(load(&cache(dir.path()).0, &digest, &wasm), (Outcome::Recovered, true));
    assert!(!p.v1.exists() && p.sum.exists(), "rewritten in the current format");

    // With a key, a version 1 entry (unkeyed by definition) is not an entry: refused and compiled again.
    std::fs::remove_file(&p.sum).unwrap();
    std::fs::write(&p.code, &code).unwrap();
    std::fs::write(&p.v1, tag::compute_v1(&digest, &code)).unwrap();
    let aot = keyed(dir.path(), 1, &metrics);
    assert!(!aot.contains(&digest));
    assert_eq!(load(&aot, &digest, &wasm), (Outcome::Recovered, true));
    assert!(!p.v1.exists() && aot.verifies(&digest));
}
