//! Kubeless and Kyma objects (Kubernetes YAML, multi-document or a `kind: List`) → wasmfn `Function` manifests
//! with their files, and a report of what was not carried over. `wasmfn import` writes them as function folders;
//! the operator's compatibility mode serves legacy objects through [`convert_object`].
//!
//! Inputs are treated as hostile: sizes are bounded, names are checked as DNS labels, nothing is fetched, and a
//! conversion either succeeds for every object or fails naming the object and field.

pub mod archive;
mod kubeless;
mod kyma;
pub mod model;

pub use model::{Functions, Imported};
use model::{Notes, Object};
use serde_json::Value;

/// Why an import failed: the object (`file, document N` or `kind namespace/name`), the field and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// The result of a conversion step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::Error(format!($($arg)*))) };
}

/// Largest input file (or stdin).
pub const MAX_INPUT: u64 = 64 << 20;
/// Most objects in the input.
const MAX_OBJECTS: usize = 10_000;
/// Largest total of files written.
pub const MAX_OUTPUT: usize = 512 << 20;

/// The API group/version of Kubeless' resources.
pub const KUBELESS_API_VERSION: &str = kubeless::API_VERSION;
/// The API group/version of Kyma's `Function`.
pub const KYMA_API_VERSION: &str = kyma::SERVERLESS;
/// The NATS server a Kubeless `NATSTrigger` is given when `--nats-url` is not set.
pub const DEFAULT_NATS_URL: &str = "nats://nats.nats-io.svc.cluster.local:4222";

/// What the import made: function folders and the report.
pub struct Outcome {
    /// `(namespace, name)` → the function.
    pub functions: Functions,
    /// `report.md`.
    pub report: String,
}

/// The objects of a YAML stream: its documents, with the items of `kind: List` documents.
fn objects(name: &str, text: &str) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let at = format!("{name}, document {}", i + 1);
        let value: Value =
            serde::Deserialize::deserialize(doc).map_err(|e| Error(format!("{at}: the YAML does not parse: {e}")))?;
        if value.is_null() {
            continue;
        }
        if value["kind"] == "List" && value["apiVersion"] == "v1" {
            let Value::Array(items) = &value["items"] else { bail!("{at}: a `List` without `items`") };
            for (j, item) in items.iter().enumerate() {
                out.push(Object::new(format!("{at}, item {}", j + 1), item.clone())?);
            }
        } else {
            out.push(Object::new(at, value)?);
        }
        if out.len() > MAX_OBJECTS {
            bail!("{name}: more than {MAX_OBJECTS} objects");
        }
    }
    Ok(out)
}

/// Which converter takes an object.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    KubelessFunction,
    HttpTrigger,
    CronTrigger,
    NatsTrigger,
    KafkaTrigger,
    KymaFunction,
    Subscription,
}

fn kind(obj: &Object) -> Result<Kind> {
    let kind = match (obj.api_version.as_str(), obj.kind.as_str()) {
        (kubeless::API_VERSION, "Function") => Kind::KubelessFunction,
        (kubeless::API_VERSION, "HTTPTrigger") => Kind::HttpTrigger,
        (kubeless::API_VERSION, "CronJobTrigger") => Kind::CronTrigger,
        (kubeless::API_VERSION, "NATSTrigger") => Kind::NatsTrigger,
        (kubeless::API_VERSION, "KafkaTrigger") => Kind::KafkaTrigger,
        (kyma::SERVERLESS, "Function") => Kind::KymaFunction,
        (kyma::EVENTING, "Subscription") => Kind::Subscription,
        (api, kind) => bail!(
            "{}: `apiVersion`/`kind` `{}` `{}` is not imported: expected {} (Function, HTTPTrigger, CronJobTrigger, \
             NATSTrigger, KafkaTrigger), {} Function or {} Subscription",
            obj.at,
            model::clip(api),
            model::clip(kind),
            kubeless::API_VERSION,
            kyma::SERVERLESS,
            kyma::EVENTING
        ),
    };
    Ok(kind)
}

/// Converts every object of `inputs` (`(name, YAML)`); any error stops the whole import.
pub fn convert(inputs: &[(String, String)], nats_url: &str) -> Result<Outcome> {
    let mut objs = Vec::new();
    for (name, text) in inputs {
        for obj in objects(name, text)? {
            let k = kind(&obj)?;
            objs.push((obj, k));
        }
    }
    let mut functions = Functions::new();
    let mut notes: Vec<Notes> = objs.iter().map(|_| Notes::default()).collect();
    // Functions first, then what points at them.
    for ((obj, k), n) in objs.iter().zip(&mut notes) {
        let f = match k {
            Kind::KubelessFunction => kubeless::function(obj, n)?,
            Kind::KymaFunction => kyma::function(obj, n)?,
            _ => continue,
        };
        if !obj.get("metadata.annotations").is_null() {
            n.dropped("metadata.annotations", "Kubernetes bookkeeping; add back by hand what a tool needs");
        }
        let key = (obj.namespace.clone(), obj.name.clone());
        if let Some(other) = functions.insert(key, f) {
            bail!("{}: a function of this namespace and name comes also from {}", obj.label(), other.from);
        }
    }
    for ((obj, k), n) in objs.iter().zip(&mut notes) {
        match k {
            Kind::HttpTrigger => kubeless::http_trigger(obj, &mut functions, n)?,
            Kind::CronTrigger => kubeless::cron_trigger(obj, &mut functions, n)?,
            Kind::NatsTrigger => kubeless::nats_trigger(obj, &mut functions, n, nats_url)?,
            Kind::KafkaTrigger => kubeless::kafka_trigger(n),
            Kind::Subscription => kyma::subscription(obj, &mut functions, n)?,
            Kind::KubelessFunction | Kind::KymaFunction => {}
        }
    }
    for f in functions.values() {
        let yaml = manifest_text(f)?;
        wasmfn_api::Function::from_yaml(&yaml)
            .map_err(|e| Error(format!("{}: the converted manifest is invalid: {e}", f.from)))?;
    }
    let report = report(&objs.iter().map(|(o, _)| o).collect::<Vec<_>>(), &notes, &functions);
    Ok(Outcome { functions, report })
}

/// One Kubeless or Kyma `Function` object (as the API server serves it) → its wasmfn function and the report:
/// what the operator's compatibility mode applies. Other kinds are refused.
pub fn convert_object(value: Value) -> Result<(Imported, String)> {
    let at = format!(
        "{} {}/{}",
        value["kind"].as_str().unwrap_or("object"),
        value["metadata"]["namespace"].as_str().unwrap_or("default"),
        value["metadata"]["name"].as_str().unwrap_or("?")
    );
    let obj = Object::new(at, value)?;
    let mut notes = Notes::default();
    let f = match kind(&obj)? {
        Kind::KubelessFunction => kubeless::function(&obj, &mut notes)?,
        Kind::KymaFunction => kyma::function(&obj, &mut notes)?,
        _ => bail!("{}: only Functions are served in compatibility mode", obj.label()),
    };
    wasmfn_api::Function::from_yaml(&manifest_text(&f)?)
        .map_err(|e| Error(format!("{}: the converted manifest is invalid: {e}", f.from)))?;
    let mut functions = Functions::new();
    functions.insert((obj.namespace.clone(), obj.name.clone()), f);
    let report = report(&[&obj], std::slice::from_ref(&notes), &functions);
    let f = functions.into_values().next().expect("the function just inserted");
    Ok((f, report))
}

/// `function.yaml`'s text.
pub fn manifest_text(f: &model::Imported) -> Result<String> {
    let body = serde_yaml_ng::to_string(&f.manifest).map_err(|e| Error(format!("serialising a manifest: {e}")))?;
    Ok(format!("# Imported by `wasmfn import` from {}; see report.md.\n{body}", f.from))
}

fn report(objs: &[&Object], notes: &[Notes], functions: &Functions) -> String {
    let mut out = String::from("# wasmfn import report\n\n");
    let names: Vec<String> = functions.keys().map(|(ns, n)| format!("`{ns}/{n}`")).collect();
    out += &format!(
        "{} functions imported: {}.\n",
        names.len(),
        if names.is_empty() { "none".into() } else { names.join(", ") }
    );
    for (obj, n) in objs.iter().zip(notes) {
        out += &format!("\n## {} `{}/{}`\n\n", obj.kind, obj.namespace, obj.name);
        out += &format!("From {} `{}`.", obj.at, obj.api_version);
        if let Some(f) = functions.get(&(obj.namespace.clone(), obj.name.clone())).filter(|f| f.from == obj.label()) {
            out += &format!(" Written to `{}/{}/`.", obj.namespace, obj.name);
            let files: Vec<&str> = f.files.keys().map(String::as_str).collect();
            if !files.is_empty() {
                out += &format!(" Files: `function.yaml`, `{}`.", files.join("`, `"));
            }
        }
        out += "\n\n";
        for line in &n.lines {
            out += line;
            out.push('\n');
        }
    }
    out
}
