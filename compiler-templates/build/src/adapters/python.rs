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

fn requirements(src: &Path) -> Option<String> {
    let text = std::fs::read_to_string(src.join("requirements.txt")).ok()?;
    let meaningful = text.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    });
    meaningful.then_some(text)
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
            paths.push(vendor(ctx, &text, progress)?);
        }
        let step = progress.step("componentize-py");
        let mut cmd = Command::new(ctx.template.dir.join("componentize.sh"));
        cmd.arg(out).arg("wasmfn_entry").args(&paths).env("PYTHONDONTWRITEBYTECODE", "1");
        tool::run(&step, &mut cmd, false)?;
        step.finish();
        Ok(())
    }
}
