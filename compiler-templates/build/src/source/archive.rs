//! Unpacking `.tar.gz`, `.tar` and `.zip` archives of a function folder, refusing entries that would land
//! outside it and content over a size limit.

use super::SourceError;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Component, Path, PathBuf};

enum Kind {
    TarGz,
    Tar,
    Zip,
}

/// Recognises the archive by its first bytes (object names and content types are often wrong).
fn sniff(file: &mut File) -> std::io::Result<Option<Kind>> {
    let mut head = Vec::with_capacity(512);
    file.by_ref().take(512).read_to_end(&mut head)?;
    file.rewind()?;
    Ok(match head.as_slice() {
        [0x1f, 0x8b, ..] => Some(Kind::TarGz),
        [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => Some(Kind::Zip),
        h if h.get(257..262) == Some(b"ustar") => Some(Kind::Tar),
        _ => None,
    })
}

/// Unpacks `file` into `dest`; `what` names it in errors. At most `max_bytes` of file content.
pub(super) fn unpack(file: &Path, dest: &Path, what: &str, max_bytes: u64) -> Result<(), SourceError> {
    let io = |e| SourceError::io(file, e);
    let mut f = File::open(file).map_err(io)?;
    std::fs::create_dir_all(dest).map_err(|e| SourceError::io(dest, e))?;
    let bad = |detail: String| SourceError::NotAnArchive { what: what.into(), detail };
    let mut budget = Budget { left: max_bytes, limit: max_bytes, what };
    match sniff(&mut f).map_err(io)? {
        Some(Kind::TarGz) => untar(flate2::read::GzDecoder::new(f), dest, &mut budget, &bad),
        Some(Kind::Tar) => untar(f, dest, &mut budget, &bad),
        Some(Kind::Zip) => unzip(f, dest, &mut budget, bad),
        None => Err(bad("unrecognised content".into())),
    }
}

struct Budget<'a> {
    left: u64,
    limit: u64,
    what: &'a str,
}

impl Budget<'_> {
    fn take(&mut self, n: u64) -> Result<(), SourceError> {
        self.left = self.left.checked_sub(n).ok_or_else(|| SourceError::TooLarge {
            what: format!("the unpacked content of {}", self.what),
            limit: self.limit,
        })?;
        Ok(())
    }
}

/// The entry's path when it is relative and has no `..`.
fn safe_path(name: &Path) -> Result<PathBuf, SourceError> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(SourceError::UnsafeArchive {
                    entry: name.display().to_string(),
                    reason: "absolute, or leaves the folder with `..`".into(),
                });
            }
        }
    }
    Ok(out)
}

/// Refuses a symlink at `entry` whose `target` points outside the folder.
fn check_link(entry: &Path, target: &Path) -> Result<(), SourceError> {
    let escapes = || SourceError::UnsafeArchive {
        entry: entry.display().to_string(),
        reason: format!("symlink to `{}` points outside the folder", target.display()),
    };
    // Depth of the link's parent folder below the root; `..` must never take it below zero.
    let mut depth = entry.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            _ => return Err(escapes()),
        }
    }
    Ok(())
}

/// Refuses a symlink whose target goes through a symlink already extracted (`d -> sub/l1/..` where
/// `sub/l1 -> ..`): each link is checked on its own lexically, so a chain could reach outside the folder.
fn check_chain(dest: &Path, entry: &Path, target: &Path) -> Result<(), SourceError> {
    let mut at = entry.parent().map(Path::to_path_buf).unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(n) => {
                at.push(n);
                if std::fs::symlink_metadata(dest.join(&at)).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(SourceError::UnsafeArchive {
                        entry: entry.display().to_string(),
                        reason: format!(
                            "symlink to `{}` goes through the symlink `{}`",
                            target.display(),
                            at.display()
                        ),
                    });
                }
            }
            Component::ParentDir => {
                at.pop();
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses to write `name` through a symlink extracted earlier (one of its parent folders is a link).
fn check_no_link_above(dest: &Path, name: &Path) -> Result<(), SourceError> {
    let mut at = PathBuf::new();
    let parents: Vec<_> = name.components().collect();
    for c in parents.iter().take(parents.len().saturating_sub(1)) {
        at.push(c);
        if std::fs::symlink_metadata(dest.join(&at)).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(SourceError::UnsafeArchive {
                entry: name.display().to_string(),
                reason: format!("written through the symlink `{}`", at.display()),
            });
        }
    }
    Ok(())
}

fn untar(
    reader: impl Read,
    dest: &Path,
    budget: &mut Budget,
    bad: &dyn Fn(String) -> SourceError,
) -> Result<(), SourceError> {
    use tar::EntryType;
    let mut archive = tar::Archive::new(reader);
    archive.set_overwrite(true);
    let io = |e| SourceError::io(dest, e);
    // Errors reading headers mean a corrupt (or truncated) archive or gzip stream.
    let corrupt = |e: std::io::Error| bad(e.to_string());
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = safe_path(&entry.path().map_err(corrupt)?)?;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => budget.take(entry.size())?,
            EntryType::Directory => {}
            EntryType::Symlink | EntryType::Link => {
                let target = entry.link_name().map_err(corrupt)?.unwrap_or_default().into_owned();
                if kind == EntryType::Link {
                    // A hard link's target is a path from the root.
                    safe_path(&target)?;
                } else {
                    check_link(&name, &target)?;
                    check_chain(dest, &name, &target)?;
                }
            }
            // Devices and FIFOs have no place in a function folder.
            _ => continue,
        }
        if name.as_os_str().is_empty() {
            continue;
        }
        check_no_link_above(dest, &name)?;
        // `unpack_in` also refuses to write through a symlink that leaves `dest`.
        if !entry.unpack_in(dest).map_err(io)? {
            return Err(SourceError::UnsafeArchive { entry: name.display().to_string(), reason: "outside".into() });
        }
    }
    Ok(())
}

fn unzip(
    f: File,
    dest: &Path,
    budget: &mut Budget,
    bad: impl FnOnce(String) -> SourceError,
) -> Result<(), SourceError> {
    let mut archive = zip::ZipArchive::new(f).map_err(|e| bad(e.to_string()))?;
    let zip_err = |e: zip::result::ZipError| SourceError::io(dest, std::io::Error::other(e));
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(zip_err)?;
        let name = safe_path(Path::new(file.name().map_err(zip_err)?.as_ref()))?;
        if name.as_os_str().is_empty() {
            continue;
        }
        check_no_link_above(dest, &name)?;
        let target = dest.join(&name);
        let io = |e| SourceError::io(&target, e);
        if file.is_dir() {
            std::fs::create_dir_all(&target).map_err(io)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        if file.is_symlink() {
            let mut link = String::new();
            file.by_ref().take(4096).read_to_string(&mut link).map_err(io)?;
            check_link(&name, Path::new(&link))?;
            check_chain(dest, &name, Path::new(&link))?;
            std::os::unix::fs::symlink(&link, &target).map_err(io)?;
            continue;
        }
        // Count what is actually inflated: the sizes in the directory can lie.
        let mut out = File::create(&target).map_err(io)?;
        let copied = std::io::copy(&mut file.by_ref().take(budget.left + 1), &mut out).map_err(io)?;
        budget.take(copied)?;
        if let Some(mode) = file.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            let perms = std::fs::Permissions::from_mode((mode & 0o755) | 0o600);
            std::fs::set_permissions(&target, perms).map_err(io)?;
        }
    }
    Ok(())
}

/// The folder an archive holds: its single top-level folder when it has one (and no files beside it).
pub(super) fn root(dir: &Path) -> Result<PathBuf, SourceError> {
    let io = |e| SourceError::io(dir, e);
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        // macOS's Finder adds `__MACOSX` to zips it makes.
        if e.file_name() != "__MACOSX" {
            entries.push(e);
        }
    }
    match entries.as_slice() {
        [only] if only.file_type().map_err(io)?.is_dir() => Ok(only.path()),
        _ => Ok(dir.to_path_buf()),
    }
}
