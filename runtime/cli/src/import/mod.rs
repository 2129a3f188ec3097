//! `wasmfn import`: Kubeless and Kyma objects (Kubernetes YAML, multi-document or a `kind: List`) → wasmfn
//! function folders and a report of what was not carried over.
//!
//! Inputs are treated as hostile: sizes are bounded, names become folders only once checked as DNS labels,
//! nothing is fetched, and nothing is written unless every object converts (the output is assembled in a
//! temporary folder next to `--out` and renamed into place).

mod archive;
mod kubeless;
mod kyma;
mod model;

use anyhow::{Context, Result, anyhow, bail};
use model::{Functions, Notes, Object};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest input file (or stdin).
const MAX_INPUT: u64 = 64 << 20;
/// Most objects in the input.
const MAX_OBJECTS: usize = 10_000;
/// Largest total of files written.
const MAX_OUTPUT: usize = 512 << 20;
/// The NATS server a Kubeless `NATSTrigger` is given when `--nats-url` is not set.
pub const DEFAULT_NATS_URL: &str = "nats://nats.nats-io.svc.cluster.local:4222";

/// What the import made: function folders and the report.
pub struct Outcome {
    /// `(namespace, name)` → the function.
    pub functions: Functions,
    /// `report.md`.
    pub report: String,
}

/// Runs `wasmfn import`: reads `files` (stdin for none or `-`), writes `out`, prints the report.
pub fn run(files: &[PathBuf], out: &Path, force: bool, nats_url: &str) -> Result<()> {
    let mut inputs = Vec::new();
    let stdin = [PathBuf::from("-")];
    for file in if files.is_empty() { &stdin[..] } else { files } {
        let (name, mut reader): (String, Box<dyn Read>) = if file.as_os_str() == "-" {
            ("stdin".into(), Box::new(std::io::stdin()))
        } else {
            let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
            (file.display().to_string(), Box::new(f))
        };
        let mut text = String::new();
        reader.by_ref().take(MAX_INPUT + 1).read_to_string(&mut text).with_context(|| format!("reading {name}"))?;
        if text.len() as u64 > MAX_INPUT {
            bail!("{name}: larger than {} MiB", MAX_INPUT >> 20);
        }
        inputs.push((name, text));
    }
    let outcome = convert(&inputs, nats_url)?;
    write(&outcome, out, force)?;
    print!("{}", outcome.report);
    tracing::info!(functions = outcome.functions.len(), out = %out.display(), "imported");
    Ok(())
}

/// The objects of a YAML stream: its documents, with the items of `kind: List` documents.
fn objects(name: &str, text: &str) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let at = format!("{name}, document {}", i + 1);
        let value: Value =
            serde::Deserialize::deserialize(doc).map_err(|e| anyhow!("{at}: the YAML does not parse: {e}"))?;
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
            .map_err(|e| anyhow!("{}: the converted manifest is invalid: {e}", f.from))?;
    }
    let report = report(&objs.iter().map(|(o, _)| o).collect::<Vec<_>>(), &notes, &functions);
    Ok(Outcome { functions, report })
}

/// `function.yaml`'s text.
fn manifest_text(f: &model::Imported) -> Result<String> {
    let body = serde_yaml_ng::to_string(&f.manifest).context("serialising a manifest")?;
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

/// Writes `outcome` to `out`: assembled in a temporary folder next to it, renamed into place at the end.
fn write(outcome: &Outcome, out: &Path, force: bool) -> Result<()> {
    let non_empty = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("reading {}", out.display())),
    };
    if non_empty && !force {
        bail!("{} exists and is not empty: choose another --out, or --force to replace it", out.display());
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".wasmfn-import-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary folder in {}", parent.display()))?;
    let mut total = 0usize;
    for ((ns, name), f) in &outcome.functions {
        // Both are DNS labels (checked when read): plain folder names.
        let dir = tmp.path().join(ns).join(name);
        let mut files = vec![("function.yaml".to_string(), manifest_text(f)?.into_bytes())];
        files.extend(f.files.iter().map(|(p, c)| (p.clone(), c.clone())));
        for (path, content) in files {
            if !archive::is_plain_path(&path) {
                bail!("{}: the file name `{}` is not a plain relative path", f.from, model::clip(&path));
            }
            total += content.len();
            if total > MAX_OUTPUT {
                bail!("the import would write more than {} MiB", MAX_OUTPUT >> 20);
            }
            let target = dir.join(&path);
            if let Some(p) = target.parent() {
                std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
            }
            std::fs::write(&target, content).with_context(|| format!("writing {}", target.display()))?;
        }
    }
    std::fs::write(tmp.path().join("report.md"), &outcome.report).context("writing report.md")?;
    if out.exists() {
        if non_empty {
            std::fs::remove_dir_all(out).with_context(|| format!("removing {} (--force)", out.display()))?;
        } else {
            std::fs::remove_dir(out).with_context(|| format!("replacing the empty {}", out.display()))?;
        }
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, out).with_context(|| format!("moving the import into {}", out.display()))?;
    Ok(())
}
