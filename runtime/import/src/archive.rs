//! Decoding Kubeless function bodies: base64, and zips unpacked in memory with bounded sizes, refusing absolute
//! paths, `..` and symlinks.

use base64::Engine;
use std::collections::BTreeMap;
use std::io::Read;

/// Largest function body, decoded.
pub const MAX_BODY: usize = 10 << 20;
/// Largest unpacked content of a zip.
pub const MAX_UNZIPPED: u64 = 50 << 20;
/// Most entries in a zip.
pub const MAX_ENTRIES: usize = 1000;

/// Decodes standard base64 (whitespace ignored), at most [`MAX_BODY`] bytes decoded.
pub fn base64(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.len() / 4 * 3 > MAX_BODY + 3 {
        return Err(format!("more than {} MiB once decoded", MAX_BODY >> 20));
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(compact).map_err(|e| format!("not base64: {e}"))?;
    if bytes.len() > MAX_BODY {
        return Err(format!("more than {} MiB once decoded", MAX_BODY >> 20));
    }
    Ok(bytes)
}

/// Whether `path` is a relative path of plain names (`a/b.js`): no `..`, `.`, empty part, backslash or control
/// character.
pub fn is_plain_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 1024
        && path.split('/').all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains(['\\', ':']))
        && !path.chars().any(char::is_control)
}

/// The files of a zip: relative path → content. Folders are implied; symlinks, absolute paths and `..` are
/// refused, and so are more than [`MAX_ENTRIES`] entries or [`MAX_UNZIPPED`] bytes (counted as inflated, not
/// as the directory claims).
pub fn unzip(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("not a zip: {e}"))?;
    if archive.len() > MAX_ENTRIES {
        return Err(format!("{} entries, more than {MAX_ENTRIES}", archive.len()));
    }
    let mut left = MAX_UNZIPPED;
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| format!("entry {i}: {e}"))?;
        let raw = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let shown = super::model::clip(&raw);
        if entry.is_symlink() {
            return Err(format!("entry `{shown}` is a symlink (refused)"));
        }
        let name = raw.trim_start_matches("./").trim_end_matches('/');
        if raw.starts_with('/') || !is_plain_path(name) && !name.is_empty() {
            return Err(format!("entry `{shown}` is an absolute path or leaves the folder (refused)"));
        }
        if entry.is_dir() || name.is_empty() {
            continue;
        }
        let mut content = Vec::new();
        (&mut entry).take(left + 1).read_to_end(&mut content).map_err(|e| format!("entry `{shown}`: {e}"))?;
        left = left
            .checked_sub(content.len() as u64)
            .ok_or_else(|| format!("more than {} MiB unpacked", MAX_UNZIPPED >> 20))?;
        if files.insert(name.to_string(), content).is_some() {
            return Err(format!("entry `{shown}` appears twice"));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn unzips_plain_entries() {
        let files = unzip(&zip_of(&[("hello.js", b"x"), ("lib/a.js", b"y")])).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["hello.js", "lib/a.js"]);
    }

    #[test]
    fn refuses_escapes_symlinks_and_junk() {
        for bad in ["../x.js", "/etc/passwd", "a/../../x", "a\\..\\x"] {
            let err = unzip(&zip_of(&[(bad, b"x")])).unwrap_err();
            assert!(err.contains("refused"), "{bad}: {err}");
        }
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.add_symlink("link", "/etc/passwd", zip::write::SimpleFileOptions::default()).unwrap();
        let err = unzip(&w.finish().unwrap().into_inner()).unwrap_err();
        assert!(err.contains("symlink"), "{err}");
        assert!(unzip(b"hello").unwrap_err().contains("not a zip"));
    }

    #[test]
    fn bounds_inflated_size_and_base64() {
        let big = vec![0u8; (MAX_UNZIPPED + 1) as usize];
        let err = unzip(&zip_of(&[("big", &big)])).unwrap_err();
        assert!(err.contains("MiB unpacked"), "{err}");
        assert_eq!(base64("aGVs\nbG8=").unwrap(), b"hello");
        assert!(base64("***").is_err());
    }
}
