//! The single-file table of earlier nodes, `<data-dir>/functions.json` (format versions 1 and 2, and the one
//! before revisions were kept): read once at the first start of this node, which then writes a file per
//! function (`persist.rs`) and removes it.

use super::FunctionTable;
use super::persist::PersistedService;
use crate::blobs::Digest;
use crate::error::Error;
use crate::service::Service;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmfn_api::FunctionKey;

/// The newest single-file table this node migrates.
const SINGLE_FILE: u32 = 2;

fn unversioned() -> u32 {
    1
}

/// The single-file table of earlier nodes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Persisted {
    #[serde(default = "unversioned")]
    version: u32,
    functions: Vec<PersistedService>,
}

impl FunctionTable {
    /// Reads `functions.json` of an earlier node into `functions`; whether there was one.
    pub(super) fn read_single_file(
        &self,
        has_blob: &dyn Fn(&Digest) -> bool,
        functions: &mut BTreeMap<FunctionKey, Arc<Service>>,
    ) -> Result<bool, Error> {
        let path = &self.legacy;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(path, e)),
        };
        let persisted: Persisted =
            serde_json::from_str(&text).map_err(|source| Error::TableFormat { path: path.clone(), source })?;
        if persisted.version > SINGLE_FILE {
            return Err(Error::TableVersion { path: path.clone(), found: persisted.version, supported: SINGLE_FILE });
        }
        for record in persisted.functions {
            let (key, service) = record.into_service(path, self, has_blob)?;
            functions.insert(key, service);
        }
        Ok(true)
    }
}
