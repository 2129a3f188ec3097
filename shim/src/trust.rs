//! What the shim requires of the host before it shares compiled code between containers: a directory no one but
//! root can change, all the way up to `/`, and a key, readable by root only, that tags the code in it.
//!
//! Compiled code is mapped and run as native code, so whoever can write to `aot/`, or to any directory above it
//! (and so rename it away and put one of their own in its place), can run code in every wasmfn container. Each
//! directory from the host directory up to `/` must therefore be owned by root (or the shim's own user, when it
//! does not run as root) and not writable by its group or by others; group-writable covers write access granted
//! through POSIX ACLs, which shows in the group bits.
//!
//! **Sticky directories** (`/tmp`, mode 1777) are refused too. The sticky bit keeps others from renaming or
//! deleting a root-owned directory inside them, so a host directory below `/tmp` would not be replaceable once it
//! exists; but anyone may create the name before the shim does (the check then refuses it: the shim cannot start
//! containers), and periodic cleaners (`systemd-tmpfiles`) remove old files there, key included. A rule without
//! exceptions ("no one but root can change any directory on the path") is also the one an operator can verify
//! with `ls -ld`. The default `/var/lib/wasmfn/shim` satisfies it on any ordinary system.
//!
//! The key does not replace these checks; it makes them not the only defence: entries of `aot/` carry an
//! HMAC under it (`wasmfn_runtime`'s `aot-key-file`), so code planted by someone who can write the directory but
//! cannot read the key is refused and compiled again instead of run.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bytes of the AOT key.
pub const KEY_LEN: usize = 32;

/// Why the shim does not trust a directory or its key file.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file or directory could not be inspected.
    #[error("cannot inspect {}", path.display())]
    Inspect {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not owned by root (or the shim's user).
    #[error(
        "{} is owned by uid {uid} (mode {mode:04o}); compiled code below it is run as native code, so it and every \
         directory above it must be owned by root{}",
        path.display(),
        if *trusted == 0 { String::new() } else { format!(" or uid {trusted}") }
    )]
    Owner {
        /// The directory or file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its mode.
        mode: u32,
        /// The other owner accepted besides root.
        trusted: u32,
    },
    /// Writable by group or others (sticky or not).
    #[error(
        "{} (owner uid {uid}, mode {mode:04o}) is writable by {who}; compiled code below it is run as native code, \
         so no directory from it up to / may be writable by anyone but root{}: `chmod go-w` it or choose another \
         WASMFN_SHIM_DIR",
        path.display(),
        if mode & 0o1000 != 0 { " (sticky directories like /tmp included)" } else { "" }
    )]
    Writable {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its mode.
        mode: u32,
        /// `group`, `others` or both.
        who: &'static str,
    },
    /// A path component that should be a directory is not one.
    #[error("{} is not a directory", path.display())]
    NotDirectory {
        /// The path.
        path: PathBuf,
    },
    /// The key file is not a private file of [`KEY_LEN`] bytes.
    #[error(
        "AOT key file {} (owner uid {uid}, mode {mode:04o}, {len} bytes) must be a regular file of {KEY_LEN} bytes \
         that only root reads (0600); delete it to have a new one made (compiled code is then compiled again)",
        path.display()
    )]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its mode.
        mode: u32,
        /// Its size.
        len: u64,
    },
    /// The key file could not be created.
    #[error("cannot create the AOT key file {}", path.display())]
    CreateKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The effective uid of this process: the owner (besides root) a directory the shim trusts may have.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks `path` (symlinks resolved) and every directory above it up to `/`: each must be owned by root or
/// `trusted_uid` and not writable by group or others, sticky or not (see the module doc). Returns the resolved
/// path, to be used from then on: no one else can change what it names.
pub fn check_tree(path: &Path, trusted_uid: u32) -> Result<PathBuf, TrustError> {
    let real = std::fs::canonicalize(path).map_err(|source| TrustError::Inspect { path: path.to_owned(), source })?;
    for dir in real.ancestors() {
        let m =
            std::fs::symlink_metadata(dir).map_err(|source| TrustError::Inspect { path: dir.to_owned(), source })?;
        let (path, uid, mode) = (dir.to_owned(), m.uid(), m.mode() & 0o7777);
        if !m.is_dir() {
            return Err(TrustError::NotDirectory { path });
        }
        if uid != 0 && uid != trusted_uid {
            return Err(TrustError::Owner { path, uid, mode, trusted: trusted_uid });
        }
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (false, false) => continue,
            (true, false) => "its group",
            (false, true) => "others",
            (true, true) => "its group and others",
        };
        return Err(TrustError::Writable { path, uid, mode, who });
    }
    Ok(real)
}

/// Makes sure the AOT key file at `path` exists (creating it with [`KEY_LEN`] random bytes, mode 0600) and is
/// private: a regular file of [`KEY_LEN`] bytes, owned by root or `trusted_uid`, that no one else can read or
/// write. The directory holding it must have passed [`check_tree`].
///
/// A new key is written to a file of its own (created with `O_EXCL`) and then hard-linked to `path`, which fails
/// if the file exists: shims starting at once agree on one key, and none ever reads a half-written one.
pub fn ensure_key(path: &Path, trusted_uid: u32) -> Result<(), TrustError> {
    let create = |source| TrustError::CreateKey { path: path.to_owned(), source };
    if !path.exists() {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| create(std::io::Error::other(e)))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.{}", uuid::Uuid::new_v4().simple()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&key)?;
                f.sync_all()
            })
            .and_then(|()| match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                linked => linked,
            });
        let _ = std::fs::remove_file(&tmp);
        written.map_err(create)?;
    }
    let m = std::fs::symlink_metadata(path).map_err(|source| TrustError::Inspect { path: path.to_owned(), source })?;
    let (uid, mode, len) = (m.uid(), m.mode() & 0o7777, m.len());
    let owner_ok = uid == 0 || uid == trusted_uid;
    if !m.is_file() || !owner_ok || mode & 0o077 != 0 || len != KEY_LEN as u64 {
        return Err(TrustError::BadKey { path: path.to_owned(), uid, mode, len });
    }
    Ok(())
}

/// A new directory whose every ancestor passes [`check_tree`] on this machine, to build test trees in. `/tmp` is
/// sticky and world-writable, so not there: beside the test binary (in the target directory), else in `$HOME`.
#[cfg(test)]
pub(crate) fn test_base() -> tempfile::TempDir {
    let exe = std::env::current_exe().unwrap();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let candidates: Vec<PathBuf> = exe.parent().map(Path::to_owned).into_iter().chain(home).collect();
    let mut why = Vec::new();
    for dir in &candidates {
        match check_tree(dir, effective_uid()) {
            Ok(_) => return tempfile::tempdir_in(dir).unwrap(),
            Err(e) => why.push(e.to_string()),
        }
    }
    panic!("no directory to build a trusted test tree in; every candidate fails the check: {why:#?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_tree_is_trusted_and_resolved() {
        let base = test_base();
        let leaf = base.path().join("a/b/shim");
        std::fs::create_dir_all(&leaf).unwrap();
        for dir in ["a", "a/b", "a/b/shim"] {
            chmod(&base.path().join(dir), 0o755);
        }
        chmod(base.path(), 0o700);
        let real = check_tree(&leaf, effective_uid()).unwrap();
        assert_eq!(real, std::fs::canonicalize(&leaf).unwrap());
        // Through a symlink: the directory it points to is what is checked and returned.
        let link = base.path().join("link");
        std::os::unix::fs::symlink(base.path().join("a/b"), &link).unwrap();
        assert_eq!(check_tree(&link.join("shim"), effective_uid()).unwrap(), real);
    }

    #[test]
    fn a_group_or_other_writable_ancestor_is_refused_with_its_owner_and_mode() {
        let base = test_base();
        let leaf = base.path().join("parent/shim");
        std::fs::create_dir_all(&leaf).unwrap();
        let parent = base.path().join("parent");
        for (mode, who) in [(0o775, "writable by its group;"), (0o757, "writable by others"), (0o1777, "others")] {
            chmod(&parent, mode);
            let e = check_tree(&leaf, effective_uid()).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, TrustError::Writable { .. }), "{text}");
            let named = format!("{} (owner uid {}, mode {mode:04o})", parent.display(), effective_uid());
            assert!(text.starts_with(&named) && text.contains(who), "{mode:o}: {text}");
            assert_eq!(text.contains("sticky"), mode & 0o1000 != 0, "{text}");
        }
        // The directory itself counts as much as its ancestors.
        chmod(&parent, 0o755);
        chmod(&leaf, 0o770);
        assert!(matches!(check_tree(&leaf, effective_uid()), Err(TrustError::Writable { .. })));
        // A symlink to an untrusted directory does not help.
        chmod(&leaf, 0o755);
        chmod(&parent, 0o777);
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&leaf, &link).unwrap();
        let text = check_tree(&link, effective_uid()).unwrap_err().to_string();
        assert!(text.starts_with(&parent.display().to_string()), "{text}");
        chmod(&parent, 0o755);
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let base = test_base();
        let dir = base.path().join("theirs");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o755);
        // As root, give it to `nobody`; as anyone else, trust another uid than ours.
        let (trusted, owner) = if effective_uid() == 0 {
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            (0, 65534)
        } else {
            (effective_uid() + 1, effective_uid())
        };
        let e = check_tree(&dir, trusted).unwrap_err();
        assert!(matches!(e, TrustError::Owner { uid, .. } if uid == owner), "{e}");
        assert!(e.to_string().contains(&format!("owned by uid {owner} (mode 0755)")), "{e}");
    }

    #[test]
    fn the_key_is_made_once_private_and_checked() {
        let base = test_base();
        let path = base.path().join("aot.key");
        let uid = effective_uid();
        // Shims starting at once agree on one key.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn({
                    let path = path.clone();
                    move || ensure_key(&path, uid)
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let key = std::fs::read(&path).unwrap();
        assert_eq!(key.len(), KEY_LEN);
        assert_ne!(key, [0; KEY_LEN]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 1, "no temporary files left");
        ensure_key(&path, uid).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), key, "kept");

        chmod(&path, 0o644);
        let e = ensure_key(&path, uid).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains(&path.display().to_string()), "{e}");
        chmod(&path, 0o600);
        std::fs::write(&path, b"short").unwrap();
        assert!(ensure_key(&path, uid).unwrap_err().to_string().contains("5 bytes"));
    }
}
