//! Python: the user's module runs behind the template's wasi:http glue (`runtime/`); componentize-py compiles
//! CPython, the module and the vendored pure-Python requirements into a component.

use super::{Adapter, Ctx, literal};
use crate::{BuildError, Progress, tool};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) struct Python;

/// The Python version componentize-py 0.25.1 embeds, which vendored wheels must support.
const GUEST_PYTHON: &str = "3.14";

fn requirements_meaningful(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    })
}

fn requirements(src: &Path) -> Option<String> {
    let text = std::fs::read_to_string(src.join("requirements.txt")).ok()?;
    requirements_meaningful(&text).then_some(text)
}

const DATABASE: &str = "use the database over HTTP with `requests` (e.g. PostgREST, a Data API)";
/// Packages that need sockets or native code, which a component cannot have, with what to use instead.
const REFUSED: &[(&str, &str)] = &[
    ("psycopg2", DATABASE),
    ("psycopg2-binary", DATABASE),
    ("psycopg", DATABASE),
    ("asyncpg", DATABASE),
    ("pymysql", DATABASE),
    ("mysqlclient", DATABASE),
    ("mysql-connector-python", DATABASE),
    ("pymongo", DATABASE),
    ("redis", "use a Redis REST API (e.g. Upstash) with `requests`"),
    ("kafka-python", "publish with event.emitCloudEvent and subscribe with a kafka trigger"),
    ("confluent-kafka", "publish with event.emitCloudEvent and subscribe with a kafka trigger"),
    ("pika", "publish with event.emitCloudEvent and subscribe with a trigger"),
    ("nats-py", "publish with event.emitCloudEvent and subscribe with a nats trigger"),
    ("grpcio", "call the service over HTTP/JSON with `requests`"),
    ("numpy", "native code: it cannot go into a component yet"),
    ("pandas", "native code: it cannot go into a component yet"),
    ("pillow", "native code: use an image service over HTTP"),
    ("lxml", "native code: use xml.etree.ElementTree"),
    ("bcrypt", "native code: use hashlib.scrypt or hashlib.pbkdf2_hmac"),
    ("cryptography", "native code: use hashlib/hmac/secrets"),
];

/// Packages the template provides itself (runtime/), so pip does not install the socket-based original.
const PROVIDED: &[&str] = &["requests"];

/// `requirements.txt` without the packages the template provides, or the error naming a package that cannot
/// run in a component.
fn checked_requirements(text: &str) -> Result<String, BuildError> {
    let mut kept = String::new();
    for line in text.lines() {
        let spec = line.split('#').next().unwrap_or("").trim();
        let name: String = spec
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect::<String>()
            .to_ascii_lowercase()
            .replace(['_', '.'], "-");
        if let Some((pkg, instead)) = REFUSED.iter().find(|(p, _)| *p == name) {
            return Err(BuildError::Failed {
                step: "check requirements.txt".into(),
                output: format!(
                    "requirements.txt: `{pkg}` needs raw sockets or native code, which a Wasm function does not have: {instead}"
                ),
            });
        }
        if PROVIDED.contains(&name.as_str()) {
            kept.push_str("# provided by the wasmfn template over wasi:http: ");
        }
        kept.push_str(line);
        kept.push('\n');
    }
    Ok(kept)
}

/// Installs the requirements (pure-Python wheels only) into a cache folder keyed by the file's contents.
fn vendor(ctx: &Ctx<'_>, text: &str, progress: &Progress) -> Result<PathBuf, BuildError> {
    let key = hex::encode(Sha256::digest(format!("{GUEST_PYTHON}\n{text}")));
    let dir = ctx.cache_dir.join("python-vendor").join(&key[..32]);
    if dir.is_dir() {
        return Ok(dir);
    }
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let step = progress.step("pip install -r requirements.txt (vendoring)");
    let mut cmd = Command::new(ctx.template.dir.join(".venv/bin/pip"));
    cmd.args(["install", "--disable-pip-version-check", "--no-compile", "--only-binary=:all:"])
        .args(["--platform", "any", "--implementation", "py", "--python-version", GUEST_PYTHON])
        .arg("--target")
        .arg(&tmp)
        .args(["-r", "requirements.txt"])
        .current_dir(ctx.src);
    tool::run(&step, &mut cmd, false).map_err(|e| match e {
        BuildError::Failed { step, output } => BuildError::Failed {
            step,
            output: format!(
                "{output}\nnote: only pure-Python packages (wheels tagged py3-none-any) can go into a component"
            ),
        },
        e => e,
    })?;
    step.finish();
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        // A concurrent build may have vendored the same requirements first.
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.is_dir() {
            return Err(BuildError::io(&dir, e));
        }
    }
    Ok(dir)
}

impl Adapter for Python {
    fn name(&self) -> &'static str {
        "python"
    }

    fn fingerprint(&self, ctx: &Ctx<'_>) -> Result<String, BuildError> {
        let out = Command::new(ctx.template.dir.join(".venv/bin/componentize-py")).arg("--version").output();
        Ok(out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default())
    }

    fn build(&self, ctx: &Ctx<'_>, work: &Path, out: &Path, progress: &Progress) -> Result<(), BuildError> {
        let entry = ctx.entry.expect("the python template names entry files");
        // `src/hello.py` is the module `src.hello` (a namespace package needs no `__init__.py`).
        let module = entry.trim_end_matches(".py").replace('/', ".");
        let glue = work.join("wasmfn_entry.py");
        let source = format!(
            "import wasmfn_handler\nimport {module} as user\n\nIncomingHandler = wasmfn_handler.serve(user, runtime={rt}, entry={name}, handler={function})\n",
            rt = literal(&ctx.template.spec.runtime),
            name = literal(entry),
            function = ctx.function.map_or_else(|| "None".to_string(), literal),
        );
        std::fs::write(&glue, source).map_err(|e| BuildError::io(&glue, e))?;

        let mut paths = vec![work.to_path_buf(), ctx.src.to_path_buf(), ctx.template.dir.join("runtime")];
        if let Some(text) = requirements(ctx.src) {
            let text = checked_requirements(&text)?;
            if requirements_meaningful(&text) {
                paths.push(vendor(ctx, &text, progress)?);
            }
        }
        let step = progress.step("componentize-py");
        let mut cmd = Command::new(ctx.template.dir.join("componentize.sh"));
        cmd.arg(out).arg("wasmfn_entry").args(&paths).env("PYTHONDONTWRITEBYTECODE", "1");
        tool::run(&step, &mut cmd, false)?;
        step.finish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_refuse_socket_packages_and_drop_provided_ones() {
        let err = checked_requirements("flask==3.0\nPsycopg2_Binary>=2.9 # db\n").unwrap_err().to_string();
        assert!(err.contains("`psycopg2-binary` needs raw sockets or native code"), "{err}");
        assert!(err.contains("PostgREST"), "{err}");
        let kept = checked_requirements("requests==2.32.3\nidna\n").unwrap();
        assert_eq!(kept, "# provided by the wasmfn template over wasi:http: requests==2.32.3\nidna\n");
        assert!(!requirements_meaningful(&checked_requirements("requests\n").unwrap()));
    }
}
