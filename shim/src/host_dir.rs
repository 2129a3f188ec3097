//! The host directory the shim shares between containers: `aot/` holds compiled code (keyed by component
//! digest and engine, tagged with an HMAC under `aot.key`), `run/<id>/` one container's function table and
//! blobs. The shim refuses the directory unless no one but root can change it or any directory above it
//! ([`crate::trust`]).
//!
//! Containers run after `pivot_root` into their image, where no host path is visible. The directory is
//! opened in `main`, before the zygote that every container's init process is cloned from, so the open
//! descriptor is inherited and `/proc/self/fd/<n>` reaches it from inside the container.

use crate::trust;
use anyhow::Context as _;
use std::fs::File;
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Environment variable (of containerd, which the shim inherits) naming the host directory.
pub const ENV: &str = "WASMFN_SHIM_DIR";
/// The host directory when [`ENV`] is unset.
pub const DEFAULT: &str = "/var/lib/wasmfn/shim";
/// The file in the host directory with the key that tags `aot/`'s entries: 32 random bytes, mode 0600, made by
/// the shim on its first start.
pub const KEY_FILE: &str = "aot.key";

static HOST_DIR: OnceLock<Result<RawFd, String>> = OnceLock::new();

/// Creates and opens the host directory. Failures are reported when a container needs it.
pub fn open_from_env() {
    let path = std::env::var_os(ENV).map_or_else(|| PathBuf::from(DEFAULT), PathBuf::from);
    let opened = open(&path, trust::effective_uid())
        .map(IntoRawFd::into_raw_fd)
        .map_err(|e| format!("cannot open the shim's host directory {}: {e:#}", path.display()));
    let _ = HOST_DIR.set(opened);
}

/// Creates what is missing of the host directory at `path` once it and its ancestors are trusted (owned by root or
/// `trusted_uid`, writable by no one else), and opens it.
fn open(path: &Path, trusted_uid: u32) -> anyhow::Result<File> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    // Nothing in it is created, changed or opened before it is known that no one else can put anything there
    // (`set_permissions` would follow a planted symlink). From here on, the resolved path is used.
    let path = trust::check_tree(path, trusted_uid)?;
    // Compiled code is loaded as native code: only root (containers running as root) may write it.
    // State directories are like /tmp: anyone may add one, nobody can remove or read another's.
    for (sub, mode) in [("aot", 0o755), ("run", 0o1777)] {
        let dir = path.join(sub);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    }
    trust::check_tree(&path.join("aot"), trusted_uid)?;
    // Containers that can read the key (those running as root) load and write `aot/`; others compile in their
    // own state directory (`sandbox.rs`).
    trust::ensure_key(&path.join(KEY_FILE), trusted_uid)?;
    // Close-on-exec (std's default) only matters for images that turn out to be native executables.
    File::open(&path).with_context(|| format!("cannot open {}", path.display()))
}

/// The host directory as seen from inside a container.
pub fn root() -> Result<PathBuf, String> {
    let fd = HOST_DIR.get().cloned().unwrap_or_else(|| Err("the shim's host directory was not opened".into()))?;
    let root = PathBuf::from(format!("/proc/self/fd/{fd}"));
    if !root.join("run").is_dir() {
        return Err(format!(
            "{} does not reach the shim's host directory: is /proc mounted in the container?",
            root.display()
        ));
    }
    Ok(root)
}

/// One container's state directory in `run/`, locked while the container lives and removed when it ends.
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

/// Directories of containers that ended without cleaning up (killed) are removed once unlocked for this long;
/// the age covers a new directory whose lock is not yet taken.
const STALE_AFTER: Duration = Duration::from_secs(60);

impl StateDir {
    /// Creates a fresh directory under `<root>/run` and removes those of containers that are gone.
    pub fn create(root: &Path) -> std::io::Result<StateDir> {
        let run = root.join("run");
        sweep(&run);
        let path = run.join(uuid::Uuid::new_v4().to_string());
        // The function table holds the container's env (secrets included): owner only.
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&path)?;
        let lock = File::create(path.join("lock"))?;
        lock.lock()?;
        Ok(StateDir { path, _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn sweep(run: &Path) {
    let Ok(entries) = std::fs::read_dir(run) else { return };
    for entry in entries.flatten() {
        let old = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if old.is_none_or(|age| age < STALE_AFTER) {
            continue;
        }
        let unlocked = File::open(entry.path().join("lock")).is_ok_and(|f| f.try_lock().is_ok());
        if unlocked && std::fs::remove_dir_all(entry.path()).is_ok() {
            log::info!("removed the state of an ended container: {}", entry.path().display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dirs_are_removed_on_drop_and_live_ones_survive_a_sweep() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("run")).unwrap();
        let live = StateDir::create(root.path()).unwrap();
        let mode = std::fs::metadata(live.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the container's env is readable by its owner only");
        // A killed container: its directory stays, nobody holds its lock.
        let ended_path = root.path().join("run/ended");
        std::fs::create_dir(&ended_path).unwrap();
        File::create(ended_path.join("lock")).unwrap();
        // Both are young: kept.
        sweep(&root.path().join("run"));
        assert!(ended_path.exists() && live.path().exists());
        let past = std::time::SystemTime::now() - 2 * STALE_AFTER;
        for dir in [&ended_path, live.path()] {
            File::open(dir).unwrap().set_modified(past).unwrap();
        }
        sweep(&root.path().join("run"));
        assert!(!ended_path.exists(), "an unlocked old directory is removed");
        assert!(live.path().exists(), "a locked one is kept");
        let live_path = live.path().to_owned();
        drop(live);
        assert!(!live_path.exists());
    }

    #[test]
    fn the_host_directory_is_made_with_its_key_only_below_trusted_directories() {
        let uid = trust::effective_uid();
        let base = trust::test_base();
        let host = base.path().join("wasmfn/shim");
        open(&host, uid).unwrap();
        let mode = |p: &str| std::fs::metadata(host.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode("aot"), mode("run"), mode(KEY_FILE)), (0o755, 0o1777, 0o600));
        let key = std::fs::read(host.join(KEY_FILE)).unwrap();
        open(&host, uid).unwrap();
        assert_eq!(std::fs::read(host.join(KEY_FILE)).unwrap(), key, "the key outlives the shim");

        // Someone else may write above it: refused, and nothing is created or changed below.
        let parent = base.path().join("wasmfn");
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o775)).unwrap();
        std::fs::remove_dir(host.join("aot")).unwrap();
        let e = format!("{:#}", open(&host, uid).unwrap_err());
        assert!(
            e.contains(&format!("{} (owner uid {uid}, mode 0775) is writable by its group", parent.display())),
            "{e}"
        );
        assert!(!host.join("aot").exists());
    }
}
