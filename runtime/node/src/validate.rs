//! Deploy-time checks on a component's bytes, before the (slow) compile: is it wasm, is it a component,
//! does it export `wasi:http/incoming-handler@0.2.x`, and does it import only what the host provides.
//! `Linker::instantiate_pre` re-checks imports down to function types after the compile.

use crate::error::Error;
use wasmparser::{Parser, Payload};

/// Interfaces the host provides (any `0.2.x` version), as `package/interface` without the version.
const PROVIDED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// The export every function must have, without its `0.2.x` version.
pub(crate) const HANDLER: &str = "wasi:http/incoming-handler";

fn is_v02(name: &str, base: &str) -> bool {
    name.strip_prefix(base).and_then(|rest| rest.strip_prefix("@0.2.")).is_some_and(|patch| {
        // Accept `0.2.N` and pre-releases such as `0.2.0-rc-2023-11-10`.
        patch.split(['-', '+']).next().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Checks that `bytes` are a component the node can serve (it exports `wasi:http/incoming-handler@0.2.x` and
/// imports only what the host provides) and returns its top-level export names. Deploys run this; so do builds.
pub fn check_component(bytes: &[u8]) -> Result<Vec<String>, Error> {
    if !Parser::is_component(bytes) {
        if Parser::is_core_wasm(bytes) {
            return Err(Error::CoreModule);
        }
        let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(Error::NotWasm(if bytes.is_empty() {
            "the file is empty".into()
        } else {
            format!("it starts with 0x{head}")
        }));
    }
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|source| Error::InvalidComponent { source })?;
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    let import = import.map_err(|source| Error::InvalidComponent { source })?;
                    imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    let export = export.map_err(|source| Error::InvalidComponent { source })?;
                    exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    if !exports.iter().any(|e| is_v02(e, HANDLER)) {
        let found = if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") };
        return Err(Error::MissingHandler(found));
    }
    if let Some(bad) = imports.iter().find(|i| !PROVIDED.iter().any(|p| is_v02(i, p))) {
        return Err(Error::UnsupportedImport(bad.clone()));
    }
    Ok(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(is_v02("wasi:http/incoming-handler@0.2.0", HANDLER));
        assert!(is_v02("wasi:http/incoming-handler@0.2.10", HANDLER));
        assert!(is_v02("wasi:http/incoming-handler@0.2.0-rc-2023-11-10", HANDLER));
        assert!(!is_v02("wasi:http/incoming-handler@0.3.0", HANDLER));
        assert!(!is_v02("wasi:http/incoming-handler", HANDLER));
        assert!(!is_v02("wasi:http/incoming-handlerx@0.2.0", HANDLER));
    }

    #[test]
    fn rejects_with_names() {
        assert!(matches!(check_component(b"hello"), Err(Error::NotWasm(_))));
        assert!(matches!(check_component(&wat::parse_str("(module)").unwrap()), Err(Error::CoreModule)));
        let empty = wat::parse_str("(component)").unwrap();
        assert!(matches!(check_component(&empty), Err(Error::MissingHandler(f)) if f == "nothing"));
        let foreign = wat::parse_str(
            r#"(component
                (import "acme:db/query@1.0.0" (instance))
                (instance $h)
                (export "wasi:http/incoming-handler@0.2.3" (instance $h)))"#,
        )
        .unwrap();
        match check_component(&foreign) {
            Err(Error::UnsupportedImport(name)) => assert_eq!(name, "acme:db/query@1.0.0"),
            other => panic!("{other:?}"),
        }
    }
}
