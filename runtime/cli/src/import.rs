//! `wasmfn import`: reads Kubeless and Kyma YAML (files or stdin), converts it with `wasmfn-import`, and writes
//! function folders and `report.md`. Nothing is written unless every object converts: the output is assembled in
//! a temporary folder next to `--out` and renamed into place.

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::{Path, PathBuf};
use wasmfn_import::{MAX_INPUT, MAX_OUTPUT, Outcome, archive, convert, manifest_text, model};

pub use wasmfn_import::DEFAULT_NATS_URL;

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
