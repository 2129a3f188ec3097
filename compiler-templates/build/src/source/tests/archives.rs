//! Archives: the formats, the single top-level folder, and the entries that must not be unpacked.

use super::super::SourceError;
use super::super::archive::{root, unpack};
use std::io::Write;
use std::path::Path;

/// A tar entry written with a raw name, so names the `tar` crate's builder refuses (`..`, `/abs`) can be made.
fn tar_entry(b: &mut tar::Builder<impl Write>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// A `.tar.gz` of `(name, kind, link target, content)` entries.
fn targz(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, kind, link, data) in entries {
        tar_entry(&mut b, name, *kind, link, data);
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        let options = zip::write::SimpleFileOptions::default();
        if name.ends_with('/') {
            w.add_directory(*name, options).unwrap();
        } else {
            w.start_file(*name, options).unwrap();
            w.write_all(data).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

fn unpacked(bytes: &[u8], max: u64) -> (tempfile::TempDir, Result<(), SourceError>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive");
    std::fs::write(&file, bytes).unwrap();
    let result = unpack(&file, &dir.path().join("out"), "s3://b/k", max);
    (dir, result)
}

fn unsafe_entry(bytes: &[u8]) -> String {
    match unpacked(bytes, 1 << 20).1 {
        Err(e @ SourceError::UnsafeArchive { .. }) => e.to_string(),
        other => panic!("expected an unsafe-archive error, got {other:?}"),
    }
}

use tar::EntryType::{Directory, Regular, Symlink};

#[test]
fn a_tar_gz_with_one_top_folder_is_that_folder() {
    let bytes = targz(&[
        ("hello/", Directory, "", b""),
        ("hello/handler.py", Regular, "", b"x = 1\n"),
        ("hello/lib/", Directory, "", b""),
        ("hello/lib/link.py", Symlink, "../handler.py", b""),
    ]);
    let (dir, result) = unpacked(&bytes, 1 << 20);
    result.unwrap();
    let top = root(&dir.path().join("out")).unwrap();
    assert_eq!(top, dir.path().join("out/hello"));
    assert_eq!(std::fs::read_to_string(top.join("lib/link.py")).unwrap(), "x = 1\n");

    // Files beside the folder: the root is the archive's root.
    let bytes = targz(&[("a/x", Regular, "", b"1"), ("b", Regular, "", b"2")]);
    let (dir, result) = unpacked(&bytes, 1 << 20);
    result.unwrap();
    assert_eq!(root(&dir.path().join("out")).unwrap(), dir.path().join("out"));
}

#[test]
fn a_zip_and_a_plain_tar_unpack_too() {
    let (dir, result) = unpacked(&zip(&[("fn/", b""), ("fn/handler.js", b"export default 1;\n")]), 1 << 20);
    result.unwrap();
    let top = root(&dir.path().join("out")).unwrap();
    assert_eq!(std::fs::read_to_string(top.join("handler.js")).unwrap(), "export default 1;\n");

    let mut b = tar::Builder::new(Vec::new());
    tar_entry(&mut b, "handler.py", Regular, "", b"y = 2\n");
    let (dir, result) = unpacked(&b.into_inner().unwrap(), 1 << 20);
    result.unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("out/handler.py")).unwrap(), "y = 2\n");
}

#[test]
fn entries_leaving_the_folder_are_refused() {
    let err = unsafe_entry(&targz(&[("../evil.py", Regular, "", b"x")]));
    assert!(err.contains("`../evil.py`") && err.contains("`..`"), "{err}");
    let err = unsafe_entry(&targz(&[("/tmp/evil.py", Regular, "", b"x")]));
    assert!(err.contains("`/tmp/evil.py`"), "{err}");
    let err = unsafe_entry(&targz(&[("fn/etc", Symlink, "/etc", b"")]));
    assert!(err.contains("symlink to `/etc` points outside"), "{err}");
    let err = unsafe_entry(&targz(&[("fn/up", Symlink, "../../x", b"")]));
    assert!(err.contains("symlink to `../../x`"), "{err}");
    let err = unsafe_entry(&zip(&[("../../evil.js", b"x")]));
    assert!(err.contains("`../../evil.js`"), "{err}");
}

#[test]
fn content_over_the_limit_and_non_archives_are_refused() {
    let big = vec![b'a'; 4096];
    let (_dir, result) = unpacked(&targz(&[("big", Regular, "", &big)]), 1000);
    let err = result.unwrap_err().to_string();
    assert!(err.contains("the unpacked content of s3://b/k is larger than the limit of 1000 bytes"), "{err}");
    let (_dir, result) = unpacked(&zip(&[("big", &big)]), 1000);
    assert!(matches!(result, Err(SourceError::TooLarge { .. })), "{result:?}");

    let (_dir, result) = unpacked(b"def handler(): pass\n", 1 << 20);
    let err = result.unwrap_err().to_string();
    assert!(err.contains("s3://b/k is not an archive"), "{err}");
    let (_dir, result) = unpacked(&[0x1f, 0x8b, 8, 0, 1, 2, 3], 1 << 20);
    assert!(result.unwrap_err().to_string().contains("is not an archive"));
}

#[test]
fn a_missing_file_is_named() {
    let err = unpack(Path::new("/nonexistent/archive"), Path::new("/tmp/x"), "s3://b/k", 1).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/archive"), "{err}");
}

/// Each link of a chain is inside the folder on its own (`sub/l1 -> ..`, `d -> sub/l1/..`), but together they
/// reach its parent, and `d/x` would be written there. Chains are refused, in zip and tar alike.
#[test]
fn symlink_chains_are_refused_and_nothing_is_written_outside() {
    let chain_zip = {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        w.add_directory("sub/", options).unwrap();
        w.add_symlink("sub/l1", "..", options).unwrap();
        w.add_symlink("d", "sub/l1/..", options).unwrap();
        w.start_file("d/x", options).unwrap();
        w.write_all(b"escaped").unwrap();
        w.finish().unwrap().into_inner()
    };
    let chain_tar = targz(&[
        ("sub", Directory, "", b""),
        ("sub/l1", Symlink, "..", b""),
        ("d", Symlink, "sub/l1/..", b""),
        ("d/x", Regular, "", b"escaped"),
    ]);
    for bytes in [chain_zip, chain_tar] {
        let (dir, result) = unpacked(&bytes, 1 << 20);
        let err = match result {
            Err(e @ SourceError::UnsafeArchive { .. }) => e.to_string(),
            other => panic!("expected an unsafe-archive error, got {other:?}"),
        };
        assert!(err.contains("goes through the symlink `sub/l1`"), "{err}");
        assert!(!dir.path().join("x").exists(), "nothing lands beside the folder");
    }
    // A write through a plain link inside the folder is refused too.
    let through = targz(&[("real", Directory, "", b""), ("l", Symlink, "real", b""), ("l/f", Regular, "", b"x")]);
    let err = unsafe_entry(&through);
    assert!(err.contains("written through the symlink `l`"), "{err}");
}
