//! Where the CLI keeps its data.

use std::path::PathBuf;

/// The data folder of `up` and `build`: the user's, not the daemon's.
pub(crate) fn default_data_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("wasmfn")
}
