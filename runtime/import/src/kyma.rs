//! Kyma: `Function` (`serverless.kyma-project.io/v1alpha2`) and `Subscription`
//! (`eventing.kyma-project.io/v1alpha2`).

use super::model::{Functions, Imported, Notes, Object, clip, env, is_dns_label, kind_of};
use crate::Result;
use serde_json::{Value, json};

/// Kyma's serverless API version.
pub const SERVERLESS: &str = "serverless.kyma-project.io/v1alpha2";
/// Kyma's eventing API version.
pub const EVENTING: &str = "eventing.kyma-project.io/v1alpha2";
/// Largest inline source or dependency file.
const MAX_INLINE: usize = 1 << 20;

/// The memory limit of Kyma's function resource presets (`resourceConfiguration.function.profile`).
pub const PROFILES: [(&str, &str); 5] = [("XS", "192Mi"), ("S", "256Mi"), ("M", "512Mi"), ("L", "1Gi"), ("XL", "2Gi")];

/// The wasmfn template, entry file and dependency file of a Kyma runtime.
fn template(runtime: &str) -> Option<(&'static str, &'static str, &'static str)> {
    let digits = |rest: Option<&str>| rest.is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    if digits(runtime.strip_prefix("nodejs")) {
        Some(("js", "handler.js", "package.json"))
    } else if digits(runtime.strip_prefix("python3")) {
        Some(("python", "handler.py", "requirements.txt"))
    } else {
        None
    }
}

/// A Kyma `Function` → a function folder (inline source) or a manifest with `spec.source.git`.
pub fn function(obj: &Object, notes: &mut Notes) -> Result<Imported> {
    let runtime = obj.str("spec.runtime")?.ok_or_else(|| obj.error("spec.runtime", "missing"))?;
    let (template, entry, deps_file) = template(runtime).ok_or_else(|| {
        obj.error(
            "spec.runtime",
            &format!(
                "unknown runtime `{}`: wasmfn imports nodejs18/20/22 (→ js) and python39/312 (→ python)",
                clip(runtime)
            ),
        )
    })?;
    let mut f = Imported::new(obj, template, None);
    notes.mapped("spec.runtime", &format!("`spec.build.template: {template}` (was `{}`)", clip(runtime)));
    let inline = obj.get("spec.source.inline");
    let git = obj.get("spec.source.gitRepository");
    match (inline.is_null(), git.is_null()) {
        (false, true) => {
            let code = obj
                .str("spec.source.inline.source")?
                .ok_or_else(|| obj.error("spec.source.inline.source", "missing"))?;
            if code.len() > MAX_INLINE {
                return Err(obj.error("spec.source.inline.source", &format!("larger than {} KiB", MAX_INLINE >> 10)));
            }
            f.files.insert(entry.into(), code.as_bytes().to_vec());
            notes.mapped("spec.source.inline.source", &format!("`{entry}`"));
            if let Some(deps) = obj.str("spec.source.inline.dependencies")? {
                if deps.len() > MAX_INLINE {
                    return Err(
                        obj.error("spec.source.inline.dependencies", &format!("larger than {} KiB", MAX_INLINE >> 10))
                    );
                }
                f.files.insert(deps_file.into(), deps.as_bytes().to_vec());
                notes.mapped("spec.source.inline.dependencies", &format!("`{deps_file}`"));
            }
        }
        (true, false) => {
            let at = "spec.source.gitRepository";
            let url = obj.str(&format!("{at}.url"))?.ok_or_else(|| obj.error(&format!("{at}.url"), "missing"))?;
            let mut source = json!({"url": url});
            if let Some(reference) = obj.str(&format!("{at}.reference"))? {
                source["ref"] = json!(reference);
            }
            if let Some(dir) = obj.str(&format!("{at}.baseDir"))?.map(|d| d.trim_matches('/')).filter(|d| !d.is_empty())
            {
                source["path"] = json!(dir);
            }
            f.set("source", json!({"git": source}));
            notes
                .mapped(at, "`spec.source.git` (`url`; `reference` → `ref`; `baseDir` → `path`), built on the cluster");
            if !obj.get(&format!("{at}.auth")).is_null() {
                notes.dropped(
                    &format!("{at}.auth"),
                    "wasmfn's git source has no credentials field: use a URL the builder can read (a public or `file://` repository)",
                );
            }
        }
        (true, true) => return Err(obj.error("spec.source", "neither `inline` nor `gitRepository`")),
        (false, false) => return Err(obj.error("spec.source", "both `inline` and `gitRepository`")),
    }
    env(obj, "spec.env", obj.get("spec.env"), &mut f, notes)?;
    resources(obj, &mut f, notes)?;
    if !obj.get("spec.scaleConfig").is_null() || !obj.get("spec.replicas").is_null() {
        let max = obj.get("spec.scaleConfig")["maxReplicas"].to_string();
        notes.dropped(
            "spec.scaleConfig / spec.replicas",
            &format!(
                "wasmfn starts an instance per request and needs no replicas (maxReplicas was {max}); \
                 `spec.scaling.maxConcurrency` caps instances per node if a cap is wanted"
            ),
        );
    }
    for field in
        obj.unknown_keys("spec", &["runtime", "source", "env", "resourceConfiguration", "scaleConfig", "replicas"])
    {
        match field.as_str() {
            "spec.secretMounts" => {
                notes.dropped(&field, "wasmfn instances have no file system; pass values with `spec.env`")
            }
            "spec.runtimeImageOverride" => notes.dropped(&field, "the template's toolchain replaces the runtime image"),
            _ => notes.dropped(&field, "no wasmfn equivalent"),
        }
    }
    Ok(f)
}

/// `spec.resourceConfiguration.function`: an explicit memory limit, else the profile's (see [`PROFILES`]).
fn resources(obj: &Object, f: &mut Imported, notes: &mut Notes) -> Result<()> {
    let at = "spec.resourceConfiguration.function";
    let explicit = format!("{at}.resources.limits.memory");
    if let Some(m) = obj.str(&explicit)? {
        wasmfn_api::Quantity::parse(m).map_err(|e| obj.error(&explicit, &format!("`{}`: {e}", clip(m))))?;
        f.limit("memory", json!(m));
        notes.mapped(&explicit, &format!("`spec.limits.memory: {m}`"));
    } else if let Some(profile) = obj.str(&format!("{at}.profile"))? {
        let (_, memory) = PROFILES.iter().find(|(p, _)| *p == profile).ok_or_else(|| {
            obj.error(&format!("{at}.profile"), &format!("unknown profile `{}` (XS, S, M, L, XL)", clip(profile)))
        })?;
        f.limit("memory", json!(memory));
        notes.mapped(
            &format!("{at}.profile"),
            &format!("`spec.limits.memory: {memory}` (the {profile} preset's limit)"),
        );
    }
    if !obj.get(&format!("{at}.resources.requests")).is_null()
        || !obj.get(&format!("{at}.resources.limits.cpu")).is_null()
    {
        notes.dropped(&format!("{at}.resources"), "CPU and requests: wasmfn limits a request's time, not CPU");
    }
    if !obj.get("spec.resourceConfiguration.build").is_null() {
        notes.dropped("spec.resourceConfiguration.build", "builds run with `wasmfn build`'s own resources");
    }
    Ok(())
}

/// The function a Subscription's `spec.sink` names: `http://NAME[.NAMESPACE[.svc.cluster.local]][:port][/path]`.
fn sink(obj: &Object, sink: &str) -> Result<(String, String, Option<String>)> {
    let bad = |why: &str| obj.error("spec.sink", &format!("`{}` {why}", clip(sink)));
    let rest = sink
        .strip_prefix("http://")
        .or_else(|| sink.strip_prefix("https://"))
        .ok_or_else(|| bad("is not an http URL"))?;
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let host = authority.split(':').next().unwrap_or_default();
    let mut parts = host.split('.');
    let name = parts.next().unwrap_or_default().to_string();
    let namespace = parts.next().unwrap_or(&obj.namespace).to_string();
    let tail: Vec<&str> = parts.collect();
    if !(tail.is_empty() || tail == ["svc"] || tail == ["svc", "cluster", "local"])
        || !is_dns_label(&name)
        || !is_dns_label(&namespace)
    {
        return Err(bad("does not name a function's service (`http://NAME.NAMESPACE.svc.cluster.local`)"));
    }
    Ok((namespace, name, path.filter(|p| !p.is_empty()).map(clip)))
}

/// A Kyma `Subscription` → a broker trigger on the sink's function, filtering exactly on `type` and `source`.
pub fn subscription(obj: &Object, functions: &mut Functions, notes: &mut Notes) -> Result<()> {
    let url = obj.str("spec.sink")?.ok_or_else(|| obj.error("spec.sink", "missing"))?;
    let (namespace, name, path) = sink(obj, url)?;
    let types: Vec<String> = match obj.get("spec.types") {
        Value::Array(list) => list
            .iter()
            .map(|t| t.as_str().filter(|t| !t.is_empty()).map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| obj.error("spec.types", "every type must be a non-empty string"))?,
        other => return Err(obj.error("spec.types", &format!("expected a list, found {}", kind_of(other)))),
    };
    if types.is_empty() {
        return Err(obj.error("spec.types", "is empty"));
    }
    let source = obj.str("spec.source")?;
    let matching = obj.str("spec.typeMatching")?.unwrap_or("standard");
    let filters: Vec<Value> = types
        .iter()
        .map(|t| match source {
            Some(s) => json!({"exact": {"type": t, "source": s}}),
            None => json!({"exact": {"type": t}}),
        })
        .collect();
    let filter = if filters.len() == 1 { filters[0].clone() } else { json!({"any": filters}) };
    let Some(f) = functions.get_mut(&(namespace.clone(), name.clone())) else {
        notes.dropped(
            "spec.sink",
            &format!("`{namespace}/{name}` is not among the imported functions: nothing carried"),
        );
        return Ok(());
    };
    f.push("triggers", json!({"name": obj.name, "events": {"filter": filter}}));
    notes.mapped(
        "spec.types / spec.source",
        &format!(
            "a broker trigger `{}` on `{namespace}/{name}`: an exact filter on `type` ({}){}",
            obj.name,
            types.join(", "),
            if source.is_some() { " and `source`" } else { "" }
        ),
    );
    match matching {
        "exact" => {}
        "standard" => notes.todo(
            "`typeMatching: standard`: Kyma cleaned and prefixed event types; wasmfn matches the type exactly as published",
        ),
        other => return Err(obj.error("spec.typeMatching", &format!("unknown `{}` (standard, exact)", clip(other)))),
    }
    if let Some(p) = path {
        notes.dropped("spec.sink (path)", &format!("`/{p}`: events reach the function's root path"));
    }
    if !obj.get("spec.config").is_null() {
        notes.dropped("spec.config", "delivery concurrency follows the function's `spec.scaling`");
    }
    for field in obj.unknown_keys("spec", &["sink", "types", "source", "typeMatching", "config"]) {
        notes.dropped(&field, "no wasmfn equivalent");
    }
    Ok(())
}
