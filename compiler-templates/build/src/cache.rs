//! The build cache: components keyed by a hash of everything a build reads (the template, its tools' versions,
//! the function's sources and dependency files), kept in `<cache>/builds/<key>.wasm`.

use crate::BuildError;
use crate::template::Template;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bumped when the engine's own output changes.
const ENGINE_VERSION: &str = "wasmfn-build/1";

/// Hashes files into a key: each contributes its relative path, length and bytes, so renames count too.
struct Hasher(Sha256);

impl Hasher {
    fn part(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn file(&mut self, root: &Path, rel: &Path) -> Result<(), BuildError> {
        let path = root.join(rel);
        let bytes = std::fs::read(&path).map_err(|e| BuildError::io(&path, e))?;
        self.part(rel.to_string_lossy().as_bytes());
        self.part(&bytes);
        Ok(())
    }

    /// A file, or every file below a folder (skipping `target`, `node_modules`, hidden folders and Python's
    /// `__pycache__`, which builds themselves write: hashing it would change the key after the first build).
    fn tree(&mut self, root: &Path, rel: &Path) -> Result<(), BuildError> {
        let top = root.join(rel);
        if top.is_file() {
            return self.file(root, rel);
        }
        let walker = walkdir::WalkDir::new(&top).sort_by_file_name().into_iter().filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0
                || !(name.starts_with('.') || name == "target" || name == "node_modules" || name == "__pycache__")
        });
        for entry in walker {
            let entry = entry.map_err(|e| BuildError::Io { path: top.clone(), source: e.into() })?;
            if entry.file_type().is_file() {
                let rel = entry.path().strip_prefix(root).unwrap_or(entry.path()).to_path_buf();
                self.file(root, &rel)?;
            }
        }
        Ok(())
    }
}

/// The cache key of building `src` with `template`; `tools` names the toolchain's versions.
pub(crate) fn key(template: &Template, tools: &str, src: &Path) -> Result<String, BuildError> {
    let mut h = Hasher(Sha256::new());
    h.part(ENGINE_VERSION.as_bytes());
    h.part(template.raw.as_bytes());
    for input in &template.spec.inputs {
        h.tree(&template.dir, Path::new(input))?;
    }
    h.part(tools.as_bytes());
    for rel in template.source_files(src)? {
        h.file(src, &rel)?;
    }
    Ok(hex::encode(h.0.finalize()))
}

/// `sha256:<hex>` of a file, read in chunks.
pub(crate) fn digest_file(path: &Path) -> Result<(String, u64), BuildError> {
    let mut file = std::fs::File::open(path).map_err(|e| BuildError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| BuildError::io(path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), size))
}

/// A cached component.
pub(crate) struct Entry {
    pub(crate) path: PathBuf,
    pub(crate) digest: String,
    pub(crate) size: u64,
}

fn paths(cache_dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    let dir = cache_dir.join("builds");
    (dir.join(format!("{key}.wasm")), dir.join(format!("{key}.digest")))
}

/// The cached component for `key`, if present and intact (its bytes still hash to the recorded digest).
pub(crate) fn lookup(cache_dir: &Path, key: &str) -> Option<Entry> {
    let (wasm, digest) = paths(cache_dir, key);
    let recorded = std::fs::read_to_string(&digest).ok()?;
    let (actual, size) = digest_file(&wasm).ok()?;
    if actual != recorded.trim() {
        tracing::warn!(path = %wasm.display(), "cached component does not match its digest; rebuilding");
        return None;
    }
    Some(Entry { path: wasm, digest: actual, size })
}

/// Moves a freshly built component into the cache under `key`.
pub(crate) fn store(cache_dir: &Path, key: &str, built: &Path) -> Result<Entry, BuildError> {
    let (wasm, digest_path) = paths(cache_dir, key);
    let dir = wasm.parent().expect("builds folder");
    std::fs::create_dir_all(dir).map_err(|e| BuildError::io(dir, e))?;
    let (digest, size) = digest_file(built)?;
    std::fs::rename(built, &wasm).map_err(|e| BuildError::io(&wasm, e))?;
    // The digest file is written last: an entry without it is not an entry.
    let tmp = digest_path.with_extension("tmp");
    std::fs::write(&tmp, &digest).map_err(|e| BuildError::io(&tmp, e))?;
    std::fs::rename(&tmp, &digest_path).map_err(|e| BuildError::io(&digest_path, e))?;
    Ok(Entry { path: wasm, digest, size })
}
