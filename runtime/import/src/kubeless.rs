//! Kubeless (`kubeless.io/v1beta1`): `Function`, and the `HTTPTrigger`, `CronJobTrigger`, `NATSTrigger` and
//! `KafkaTrigger` that point at functions.

use super::archive::{self, MAX_BODY};
use super::model::{Functions, Imported, Notes, Object, clip, env, kind_of};
use crate::Result;
use serde_json::{Value, json};

/// The Kubeless API version.
pub const API_VERSION: &str = "kubeless.io/v1beta1";
/// Largest `spec.deps`.
const MAX_DEPS: usize = 1 << 20;

/// The wasmfn template, handler file extension and dependency file of a Kubeless runtime.
fn template(runtime: &str) -> Option<(&'static str, &'static str, &'static str)> {
    let version = |prefix: &str| {
        runtime
            .strip_prefix(prefix)
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    };
    if version("nodejs") || runtime == "nodejs_distroless" {
        Some(("js", "js", "package.json"))
    } else if version("python3") && runtime.len() > "python3".len() || runtime == "python3" {
        Some(("python", "py", "requirements.txt"))
    } else {
        None
    }
}

/// A Kubeless `Function` → a function folder.
pub fn function(obj: &Object, notes: &mut Notes) -> Result<Imported> {
    let runtime = obj.str("spec.runtime")?.ok_or_else(|| obj.error("spec.runtime", "missing"))?;
    let (template, ext, deps_file) = template(runtime).ok_or_else(|| {
        obj.error(
            "spec.runtime",
            &format!("unknown runtime `{}`: wasmfn imports nodejs* (→ js) and python3.* (→ python)", clip(runtime)),
        )
    })?;
    let handler = obj.str("spec.handler")?.ok_or_else(|| obj.error("spec.handler", "missing"))?;
    let file = handler
        .rsplit_once('.')
        .map(|(file, _)| file)
        .filter(|file| archive::is_plain_path(file) && handler.len() <= 256)
        .ok_or_else(|| obj.error("spec.handler", &format!("`{}` is not `file.function`", clip(handler))))?;
    let mut f = Imported::new(obj, template, Some(handler));
    notes.mapped("spec.runtime", &format!("`spec.build.template: {template}` (was `{}`)", clip(runtime)));
    notes.mapped("spec.handler", &format!("`spec.build.handler: {}`", clip(handler)));

    let body = obj.str("spec.function")?.unwrap_or_default();
    if body.len() > 2 * MAX_BODY {
        return Err(obj.error("spec.function", &format!("larger than {} MiB", MAX_BODY >> 20)));
    }
    let handler_file = format!("{file}.{ext}");
    let content_type = obj.str("spec.function-content-type")?.unwrap_or("text");
    let field_err = |m: String| obj.error("spec.function", &format!("({content_type}) {m}"));
    match content_type {
        "text" => {
            if body.len() > MAX_BODY {
                return Err(field_err(format!("larger than {} MiB", MAX_BODY >> 20)));
            }
            f.files.insert(handler_file.clone(), body.as_bytes().to_vec());
            notes.mapped("spec.function", &format!("`{handler_file}`"));
        }
        "base64" => {
            f.files.insert(handler_file.clone(), archive::base64(body).map_err(field_err)?);
            notes.mapped("spec.function", &format!("`{handler_file}` (base64-decoded)"));
        }
        "base64+zip" => {
            let zip = archive::base64(body).map_err(field_err)?;
            let files = archive::unzip(&zip).map_err(field_err)?;
            notes.mapped("spec.function", &format!("the zip's {} files, unpacked", files.len()));
            for (path, content) in files {
                if path == "function.yaml" {
                    notes.dropped(
                        "spec.function: function.yaml",
                        "the zip's own `function.yaml` is replaced by the import's",
                    );
                    continue;
                }
                f.files.insert(path, content);
            }
            if !f.files.contains_key(&handler_file) {
                notes.todo(&format!("the zip has no `{handler_file}`, which `spec.handler` names: add it"));
            }
        }
        "url" | "url+zip" => {
            let what = if content_type == "url" { format!("save it as `{handler_file}`") } else { "unzip it".into() };
            notes.todo(&format!(
                "`spec.function` is a URL, not fetched (the import uses no network): download `{}` into the folder and {what}",
                clip(body)
            ));
        }
        other => {
            return Err(obj.error(
                "spec.function-content-type",
                &format!("unknown `{}` (text, base64, base64+zip, url, url+zip)", clip(other)),
            ));
        }
    }
    if let Some(deps) = obj.str("spec.deps")? {
        if deps.len() > MAX_DEPS {
            return Err(obj.error("spec.deps", &format!("larger than {} KiB", MAX_DEPS >> 10)));
        }
        if f.files.insert(deps_file.into(), deps.as_bytes().to_vec()).is_some() {
            notes.mapped("spec.deps", &format!("`{deps_file}` (replacing the zip's)"));
        } else {
            notes.mapped("spec.deps", &format!("`{deps_file}`"));
        }
    }
    if let Some(timeout) = timeout(obj)? {
        f.limit("timeout", json!(format!("{timeout}s")));
        notes.mapped("spec.timeout", &format!("`spec.limits.timeout: {timeout}s`"));
    }
    deployment(obj, &mut f, notes)?;
    if !obj.get("spec.horizontalPodAutoscaler").is_null() {
        let max = &obj.get("spec.horizontalPodAutoscaler.spec")["maxReplicas"];
        notes.dropped(
            "spec.horizontalPodAutoscaler",
            &format!(
                "wasmfn starts an instance per request and needs no autoscaler (maxReplicas was {max}); \
                 `spec.scaling.maxConcurrency` caps instances per node if a cap is wanted"
            ),
        );
    }
    for field in obj.unknown_keys(
        "spec",
        &["runtime", "handler", "function", "function-content-type", "deps", "timeout", "deployment"],
    ) {
        match field.as_str() {
            "spec.horizontalPodAutoscaler" => {}
            "spec.checksum" => notes.dropped(&field, "wasmfn hashes the source itself"),
            "spec.service" => notes
                .dropped(&field, "no Service: wasmfn routes `<name>.<namespace>.<domain>` and `/<namespace>/<name>/`"),
            _ => notes.dropped(&field, "no wasmfn equivalent"),
        }
    }
    Ok(f)
}

/// `spec.timeout` in seconds (a string in Kubeless).
fn timeout(obj: &Object) -> Result<Option<u64>> {
    let text = match obj.get("spec.timeout") {
        Value::Null => return Ok(None),
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(obj.error("spec.timeout", &format!("expected seconds, found {}", kind_of(other)))),
    };
    match text.trim().parse::<u64>() {
        Ok(s) if (1..=24 * 3600).contains(&s) => Ok(Some(s)),
        _ => Err(obj.error("spec.timeout", &format!("`{}` is not a number of seconds from 1 to 86400", clip(&text)))),
    }
}

/// `spec.deployment`: the first container's `env` and memory limit.
fn deployment(obj: &Object, f: &mut Imported, notes: &mut Notes) -> Result<()> {
    let pod = "spec.deployment.spec.template.spec";
    let containers = match obj.get(&format!("{pod}.containers")) {
        Value::Null => Vec::new(),
        Value::Array(c) => c.clone(),
        other => {
            return Err(obj.error(&format!("{pod}.containers"), &format!("expected a list, found {}", kind_of(other))));
        }
    };
    let c0 = format!("{pod}.containers[0]");
    if let Some(c) = containers.first() {
        env(obj, &format!("{c0}.env"), &c["env"], f, notes)?;
        let memory = &c["resources"]["limits"]["memory"];
        match memory {
            Value::Null => {}
            Value::String(m) if wasmfn_api::Quantity::parse(m).is_ok() => {
                f.limit("memory", json!(m));
                notes.mapped(
                    &format!("{c0}.resources.limits.memory"),
                    &format!("`spec.limits.memory: {m}` (a pod's memory → each instance's linear memory)"),
                );
            }
            other => {
                return Err(obj.error(
                    &format!("{c0}.resources.limits.memory"),
                    &format!("`{}` is not a quantity", clip(&other.to_string())),
                ));
            }
        }
        for key in ["cpu"] {
            if !c["resources"]["limits"][key].is_null() {
                notes.dropped(&format!("{c0}.resources.limits.{key}"), "wasmfn limits a request's time, not CPU");
            }
        }
        if !c["resources"]["requests"].is_null() {
            notes.dropped(&format!("{c0}.resources.requests"), "no reservations: instances are made per request");
        }
        if let Some(m) = c.as_object() {
            for k in m.keys().filter(|k| !["env", "resources", "name"].contains(&k.as_str())) {
                notes.dropped(&format!("{c0}.{k}"), "a container setting with no wasmfn equivalent");
            }
        }
    }
    if containers.len() > 1 {
        notes.dropped(&format!("{pod}.containers[1..]"), "sidecar containers have no wasmfn equivalent");
    }
    for field in obj.unknown_keys(pod, &["containers"]) {
        notes.dropped(&field, "a pod setting with no wasmfn equivalent");
    }
    for field in obj.unknown_keys("spec.deployment.spec", &["template"]) {
        notes.dropped(&field, "a Deployment setting with no wasmfn equivalent");
    }
    Ok(())
}

/// The function a trigger's `spec.function-name` names, in the trigger's namespace; `None` (reported) when the
/// input has no such function.
fn target<'a>(obj: &Object, functions: &'a mut Functions, notes: &mut Notes) -> Result<Option<&'a mut Imported>> {
    let name = obj.str("spec.function-name")?.ok_or_else(|| obj.error("spec.function-name", "missing"))?;
    let key = (obj.namespace.clone(), name.to_string());
    let found = functions.get_mut(&key);
    if found.is_none() {
        notes.dropped(
            "spec.function-name",
            &format!("`{}/{}` is not among the imported functions: nothing carried", obj.namespace, clip(name)),
        );
    }
    Ok(found)
}

/// `HTTPTrigger`: `spec.path` → `spec.routes`.
pub fn http_trigger(obj: &Object, functions: &mut Functions, notes: &mut Notes) -> Result<()> {
    let Some(f) = target(obj, functions, notes)? else { return Ok(()) };
    let path = obj.str("spec.path")?.unwrap_or("").trim_matches('/');
    if path.is_empty() {
        notes.dropped("spec.path", "the function answers on `/<namespace>/<name>/` and its host already");
    } else {
        let route = format!("/{path}");
        f.push("routes", json!({"path": route}));
        notes.mapped("spec.path", &format!("`spec.routes: [{{path: {}}}]` on `{}`", clip(&route), obj.namespace));
    }
    if let Some(host) = obj.str("spec.host-name")? {
        notes.dropped(
            "spec.host-name",
            &format!(
                "`{}`: wasmfn answers on `<name>.<namespace>.<domain>`; point the name at the ingress",
                clip(host)
            ),
        );
    }
    for field in obj.unknown_keys("spec", &["function-name", "path", "host-name"]) {
        notes.dropped(&field, "TLS, auth, CORS and gateways belong to the ingress in front of wasmfn");
    }
    Ok(())
}

/// `CronJobTrigger`: `spec.schedule` → a `cron` trigger named after the object.
pub fn cron_trigger(obj: &Object, functions: &mut Functions, notes: &mut Notes) -> Result<()> {
    let schedule = obj.str("spec.schedule")?.ok_or_else(|| obj.error("spec.schedule", "missing"))?;
    let Some(f) = target(obj, functions, notes)? else { return Ok(()) };
    let mut cron = json!({"schedule": schedule});
    if let Some(payload) = obj.get("spec.payload").as_object().filter(|p| !p.is_empty()) {
        cron["data"] = json!(Value::Object(payload.clone()).to_string());
        notes.mapped("spec.payload", "`cron.data` (JSON)");
    }
    f.push("triggers", json!({"name": obj.name, "cron": cron}));
    notes.mapped("spec.schedule", &format!("`spec.triggers[{}].cron.schedule` (UTC)", obj.name));
    notes.todo("the handler now gets a `dev.wasmfn.cron` CloudEvent (a POST) where Kubeless sent a plain GET");
    for field in obj.unknown_keys("spec", &["function-name", "schedule", "payload"]) {
        notes.dropped(&field, "no wasmfn equivalent");
    }
    Ok(())
}

/// `NATSTrigger`: `spec.topic` → a `nats` trigger on every imported function of the namespace whose labels match
/// `spec.functionSelector.matchLabels`.
pub fn nats_trigger(obj: &Object, functions: &mut Functions, notes: &mut Notes, nats_url: &str) -> Result<()> {
    let topic = obj.str("spec.topic")?.ok_or_else(|| obj.error("spec.topic", "missing"))?;
    let labels = match obj.get("spec.functionSelector.matchLabels") {
        Value::Object(m) => m.clone(),
        _ => return Err(obj.error("spec.functionSelector.matchLabels", "missing: the trigger selects no function")),
    };
    if !obj.get("spec.functionSelector.matchExpressions").is_null() {
        notes.dropped("spec.functionSelector.matchExpressions", "only `matchLabels` selects functions here");
    }
    // A JetStream stream name: letters, digits, `-` and `_`.
    let stream: String = topic.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let stream = format!("KUBELESS_{}", stream.to_ascii_uppercase());
    let mut matched = Vec::new();
    for ((ns, name), f) in functions.iter_mut() {
        let fl = &f.manifest["metadata"]["labels"];
        if *ns == obj.namespace && labels.iter().all(|(k, v)| fl[k] == *v) {
            let trigger = json!({"name": obj.name, "nats": {"url": nats_url, "subject": topic, "stream": stream}});
            f.push("triggers", trigger);
            matched.push(format!("`{ns}/{name}`"));
        }
    }
    if matched.is_empty() {
        notes.dropped("spec.functionSelector", "matches none of the imported functions: nothing carried");
        return Ok(());
    }
    notes.mapped(
        "spec.topic",
        &format!(
            "a `nats` trigger `{}` (subject `{}`, stream `{stream}`) on {}",
            obj.name,
            clip(topic),
            matched.join(", ")
        ),
    );
    notes.todo(&format!(
        "check the NATS URL `{}` (`--nats-url`); wasmfn reads JetStream and creates the stream capturing the subject",
        clip(nats_url)
    ));
    Ok(())
}

/// `KafkaTrigger`: not imported yet.
pub fn kafka_trigger(notes: &mut Notes) {
    notes.dropped("spec", "not yet supported (Kafka source is issue 20)");
}
