//! Registry credentials: `WASMFN_REGISTRY_USER`/`WASMFN_REGISTRY_PASSWORD`, else the registry's entry in
//! `~/.docker/config.json` (`$DOCKER_CONFIG/config.json`), else anonymous. Bearer tokens are then negotiated by
//! the client from the registry's `WWW-Authenticate` challenge.

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use std::path::PathBuf;

fn docker_config() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => dirs::home_dir().map(|h| h.join(".docker/config.json")),
    }
}

/// The `auth` (base64 `user:password`) or `username`/`password` of `registry` in a Docker config.
fn from_docker_config(text: &str, registry: &str) -> Option<(String, String)> {
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let auths = json.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(k, v)| {
        let host = k.trim_start_matches("https://").trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        (host == registry).then_some(v)
    })?;
    if let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some((user.to_string(), password.to_string()));
    }
    let user = entry.get("username")?.as_str()?;
    let password = entry.get("password")?.as_str()?;
    Some((user.to_string(), password.to_string()))
}

/// Credentials for `registry` (`host[:port]`).
pub fn credentials(registry: &str) -> RegistryAuth {
    if let (Ok(user), Ok(password)) = (std::env::var("WASMFN_REGISTRY_USER"), std::env::var("WASMFN_REGISTRY_PASSWORD"))
    {
        return RegistryAuth::Basic(user, password);
    }
    let from_file =
        docker_config().and_then(|p| std::fs::read_to_string(p).ok()).and_then(|t| from_docker_config(&t, registry));
    match from_file {
        Some((user, password)) => RegistryAuth::Basic(user, password),
        None => RegistryAuth::Anonymous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_entries_by_host() {
        let text = r#"{"auths": {
            "https://reg.example:5000/v1/": {"auth": "YWxpY2U6czNjcmV0"},
            "other.example": {"username": "bob", "password": "pw"}
        }}"#;
        assert_eq!(from_docker_config(text, "reg.example:5000"), Some(("alice".into(), "s3cret".into())));
        assert_eq!(from_docker_config(text, "other.example"), Some(("bob".into(), "pw".into())));
        assert_eq!(from_docker_config(text, "missing.example"), None);
        assert_eq!(from_docker_config("not json", "x"), None);
    }
}
