//! What the importers share: the objects read, the functions made from them and the report's notes.

use crate::{Error, Result};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One Kubernetes object of the input, with its identity checked.
pub struct Object {
    /// Where it was read: `FILE, document N` (`, item M` inside a `List`).
    pub at: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace` (`default` when absent), a DNS label.
    pub namespace: String,
    /// `metadata.name`, a DNS label.
    pub name: String,
    /// The whole object.
    pub value: Value,
}

/// Whether `s` is a DNS label: what a name must be before it becomes a folder.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Object {
    /// Reads the identity of `value`; a name or namespace that is not a DNS label is refused.
    pub fn new(at: String, value: Value) -> Result<Object> {
        let text = |v: &Value, field: &str| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            _ => Err(Error(format!("{at}: `{field}` is not a string"))),
        };
        if !value.is_object() {
            return Err(Error(format!("{at}: not a Kubernetes object (a mapping with apiVersion and kind)")));
        }
        let api_version = text(&value["apiVersion"], "apiVersion")?;
        let kind = text(&value["kind"], "kind")?;
        let name = text(&value["metadata"]["name"], "metadata.name")?;
        let mut namespace = text(&value["metadata"]["namespace"], "metadata.namespace")?;
        if namespace.is_empty() {
            namespace = "default".into();
        }
        let obj = Object { at, api_version, kind, namespace, name, value };
        for (field, v) in [("metadata.name", &obj.name), ("metadata.namespace", &obj.namespace)] {
            if !is_dns_label(v) {
                return Err(obj.error(
                    field,
                    &format!("`{}` is not a DNS label (lowercase letters, digits and `-`, at most 63)", clip(v)),
                ));
            }
        }
        Ok(obj)
    }

    /// `apiVersion kind namespace/name (FILE, document N)`, naming the object in errors and the report.
    pub fn label(&self) -> String {
        format!("{} {} {}/{} ({})", self.api_version, self.kind, self.namespace, self.name, self.at)
    }

    /// The value at a dotted path under the object (`spec.deployment.spec`), `Null` when absent.
    pub fn get(&self, path: &str) -> &Value {
        path.split('.').fold(&self.value, |v, key| &v[key])
    }

    /// The string at `path`: `None` when absent or empty, an error naming the field when not a string.
    pub fn str(&self, path: &str) -> Result<Option<&str>> {
        match self.get(path) {
            Value::Null => Ok(None),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(self.error(path, &format!("expected a string, found {}", kind_of(other)))),
        }
    }

    /// An error naming this object and one of its fields.
    pub fn error(&self, field: &str, message: &str) -> Error {
        Error(format!("{}: `{field}`: {message}", self.label()))
    }

    /// The keys of the mapping at `path` other than `known`, for the report.
    pub fn unknown_keys(&self, path: &str, known: &[&str]) -> Vec<String> {
        match self.get(path) {
            Value::Object(m) => {
                m.keys().filter(|k| !known.contains(&k.as_str())).map(|k| format!("{path}.{k}")).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// A JSON type's name, for errors.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// `s` cut to 120 characters with control characters replaced: input text shown in errors and the report.
pub fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(120).map(|c| if c.is_control() || c == '`' { '?' } else { c }).collect();
    if s.chars().count() > 120 {
        out.push('…');
    }
    out
}

/// A function made from an input object: its manifest (checked at the end) and its files.
pub struct Imported {
    /// The object it came from, `apiVersion kind namespace/name (…)`.
    pub from: String,
    /// The `Function` manifest being built.
    pub manifest: Value,
    /// Files of the function folder: a relative path of plain names → content.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Imported {
    /// A function `namespace/name` built with `template` (and `handler`, when given).
    pub fn new(obj: &Object, template: &str, handler: Option<&str>) -> Imported {
        let mut build = json!({"template": template});
        if let Some(h) = handler {
            build["handler"] = json!(h);
        }
        let mut manifest = json!({
            "apiVersion": wasmfn_api::API_VERSION,
            "kind": wasmfn_api::KIND,
            "metadata": {"name": obj.name, "namespace": obj.namespace},
            "spec": {"build": build},
        });
        // Labels select functions (a Kubeless NATSTrigger's functionSelector); string values only.
        if let Value::Object(labels) = &obj.value["metadata"]["labels"] {
            let labels: serde_json::Map<_, _> =
                labels.iter().filter(|(_, v)| v.is_string()).map(|(k, v)| (k.clone(), v.clone())).collect();
            if !labels.is_empty() {
                manifest["metadata"]["labels"] = Value::Object(labels);
            }
        }
        Imported { from: obj.label(), manifest, files: BTreeMap::new() }
    }

    /// Sets `spec.<key>`.
    pub fn set(&mut self, key: &str, value: Value) {
        self.manifest["spec"][key] = value;
    }

    /// Sets `spec.limits.<key>`.
    pub fn limit(&mut self, key: &str, value: Value) {
        if !self.manifest["spec"]["limits"].is_object() {
            self.manifest["spec"]["limits"] = json!({});
        }
        self.manifest["spec"]["limits"][key] = value;
    }

    /// Appends to the list `spec.<key>` (`routes`, `triggers`, `env`).
    pub fn push(&mut self, key: &str, item: Value) {
        let list = &mut self.manifest["spec"][key];
        if !list.is_array() {
            *list = json!([]);
        }
        list.as_array_mut().expect("a list").push(item);
    }
}

/// The functions made so far, by `(namespace, name)`.
pub type Functions = BTreeMap<(String, String), Imported>;

/// What became of one input object: lines of the report.
#[derive(Default)]
pub struct Notes {
    /// Markdown list items.
    pub lines: Vec<String>,
}

impl Notes {
    /// `from` was carried over as `to`.
    pub fn mapped(&mut self, from: &str, to: &str) {
        self.lines.push(format!("- `{from}` → {to}"));
    }

    /// `field` was not carried over, because `why`.
    pub fn dropped(&mut self, field: &str, why: &str) {
        self.lines.push(format!("- **not carried**: `{field}`: {why}"));
    }

    /// Something to do by hand.
    pub fn todo(&mut self, what: &str) {
        self.lines.push(format!("- **to do**: {what}"));
    }
}

/// `env` entries (`name`, `value`, `valueFrom`), the value at `path` of `obj`, → `spec.env`; `valueFrom` is
/// reported.
pub fn env(obj: &Object, path: &str, list: &Value, f: &mut Imported, notes: &mut Notes) -> Result<()> {
    let list = match list {
        Value::Null => return Ok(()),
        Value::Array(l) => l,
        other => return Err(obj.error(path, &format!("expected a list, found {}", kind_of(other)))),
    };
    let mut carried = 0;
    for (i, var) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(name) = var["name"].as_str() else {
            return Err(obj.error(&format!("{at}.name"), "missing or not a string"));
        };
        if !var["valueFrom"].is_null() {
            let from = var["valueFrom"].as_object().and_then(|m| m.keys().next().cloned()).unwrap_or_default();
            notes.dropped(
                &format!("{at}.valueFrom ({})", clip(name)),
                &format!("`{}`: wasmfn's `spec.env` holds plain values only; set the value by hand", clip(&from)),
            );
            continue;
        }
        let value = match &var["value"] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => {
                return Err(obj.error(&format!("{at}.value"), &format!("expected a string, found {}", kind_of(other))));
            }
        };
        f.push("env", json!({"name": name, "value": value}));
        carried += 1;
    }
    if carried > 0 {
        notes.mapped(path, &format!("`spec.env` ({carried} carried)"));
    }
    Ok(())
}
