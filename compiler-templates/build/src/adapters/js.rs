//! JavaScript: the user's module (and its npm dependencies) is bundled by esbuild behind the template's
//! dispatcher (`runtime/`, with Node.js built-in polyfills in `runtime/node/`), then componentize-js compiles the
//! bundle into a component.

use super::{Adapter, Ctx, js_wrap, literal, npm_version};
use crate::{BuildError, Progress, tool};
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

pub(crate) struct Js;

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether `package.json` declares dependencies that `node_modules` does not reflect yet.
fn needs_install(src: &Path) -> Result<bool, BuildError> {
    let manifest = src.join("package.json");
    let Ok(text) = std::fs::read_to_string(&manifest) else { return Ok(false) };
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| BuildError::Failed { step: "read package.json".into(), output: format!("package.json: {e}") })?;
    let declares = ["dependencies", "optionalDependencies"]
        .iter()
        .any(|k| json[k].as_object().is_some_and(|deps| !deps.is_empty()));
    if !declares {
        return Ok(false);
    }
    // npm records what it installed in node_modules/.package-lock.json.
    let Some(installed) = modified(&src.join("node_modules/.package-lock.json")) else { return Ok(true) };
    let newest = [manifest, src.join("package-lock.json")].iter().filter_map(|p| modified(p)).max();
    Ok(newest.is_some_and(|t| t > installed))
}

impl Adapter for Js {
    fn name(&self) -> &'static str {
        "js"
    }

    fn prepare(&self, ctx: &Ctx<'_>, progress: &Progress) -> Result<(), BuildError> {
        if !needs_install(ctx.src)? {
            return Ok(());
        }
        let step = progress.step("npm install");
        let mut cmd = Command::new("npm");
        cmd.args(["install", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(ctx.src);
        tool::run(&step, &mut cmd, false)?;
        step.finish();
        Ok(())
    }

    fn fingerprint(&self, ctx: &Ctx<'_>) -> Result<String, BuildError> {
        let modules = ctx.template.dir.join("node_modules");
        Ok(format!(
            "componentize-js {} esbuild {}",
            npm_version(&modules.join("@bytecodealliance/componentize-js")),
            npm_version(&modules.join("esbuild"))
        ))
    }

    fn build(&self, ctx: &Ctx<'_>, work: &Path, out: &Path, progress: &Progress) -> Result<(), BuildError> {
        let template = &ctx.template.dir;
        let runtime = template.join("runtime");
        let user = ctx.src.join(ctx.entry.expect("the js template names entry files"));
        let entry = work.join("entry.mjs");
        let source = format!(
            "import {prelude};\nimport * as user from {user};\nimport {{ serve }} from {dispatch};\nserve(user, {{ runtime: {rt}, entry: {name}, handler: {function} }});\n",
            prelude = literal(&runtime.join("prelude.mjs").display().to_string()),
            user = literal(&user.display().to_string()),
            dispatch = literal(&runtime.join("wasmfn.mjs").display().to_string()),
            rt = literal(&ctx.template.spec.runtime),
            name = literal(ctx.entry.unwrap_or_default()),
            function = ctx.function.map_or_else(|| "undefined".to_string(), literal),
        );
        std::fs::write(&entry, source).map_err(|e| BuildError::io(&entry, e))?;

        let bundle = work.join("bundle.mjs");
        let step = progress.step("bundle (esbuild)");
        // bundle.mjs: esbuild with the Node.js built-in polyfills and the build-time refusal of packages that
        // need sockets or native code.
        let mut cmd = Command::new("node");
        cmd.arg(template.join("bundle.mjs"))
            .arg(&entry)
            .arg(&bundle)
            // Relative paths in messages (`handler.js:3:7`) read best from the function's folder.
            .current_dir(ctx.src);
        tool::run(&step, &mut cmd, false)?;
        step.finish();

        // Splicing the engine is cached across functions (componentize.mjs); the reference pipeline (all of
        // componentize-js's steps in node) stays reachable for comparison and as an escape hatch.
        let cache = ctx.cache_dir.join("js-engine");
        if std::env::var_os("WASMFN_JS_PIPELINE").is_some_and(|v| v == "componentize-js") {
            return componentize(template, &[out.as_os_str(), bundle.as_os_str()], &cache, work, progress);
        }
        let core = work.join("core");
        componentize(template, &["--core".as_ref(), core.as_os_str(), bundle.as_os_str()], &cache, work, progress)?;
        let step = progress.step("wrap the component (wit-component)");
        let read = |name: &str| std::fs::read(core.join(name)).map_err(|e| BuildError::io(&core.join(name), e));
        let (engine, stubbed, pre) =
            (read("engine.wasm")?, read("engine-stubbed.wasm")?, read("pre-initialised.wasm")?);
        let module = match js_wrap::transplant(&engine, &stubbed, &pre) {
            Ok(module) => module,
            Err(reason) => {
                tracing::warn!(%reason, "cannot reuse the stubbed engine; running all of componentize-js");
                step.finish();
                return componentize(template, &[out.as_os_str(), bundle.as_os_str()], &cache, work, progress);
            }
        };
        let adapter = template.join("node_modules/@bytecodealliance/jco/lib/wasi_snapshot_preview1.reactor.wasm");
        let adapter = std::fs::read(&adapter).map_err(|e| BuildError::io(&adapter, e))?;
        let version = npm_version(&template.join("node_modules/@bytecodealliance/componentize-js"));
        let component = js_wrap::component(&module, &adapter, &version)
            .map_err(|output| BuildError::Failed { step: "wrap the component (wit-component)".into(), output })?;
        std::fs::write(out, component).map_err(|e| BuildError::io(out, e))?;
        step.finish();
        Ok(())
    }
}

/// Runs `componentize.mjs` with `args`, keeping the engine cache in `cache`.
fn componentize(
    template: &Path,
    args: &[&std::ffi::OsStr],
    cache: &Path,
    work: &Path,
    progress: &Progress,
) -> Result<(), BuildError> {
    let step = progress.step("componentize-js");
    let mut cmd = Command::new("node");
    cmd.arg(template.join("componentize.mjs")).args(args).env("WASMFN_JS_CACHE", cache).current_dir(work);
    tool::run(&step, &mut cmd, false).map_err(|e| match e {
        // Node's own stack for the failed promise says nothing useful; keep the engine's message.
        BuildError::Failed { step, output } => BuildError::Failed { step, output: trim_node_trace(&output) },
        e => e,
    })?;
    step.finish();
    Ok(())
}

/// Drops node's stack frames and the wizer wasm backtrace from componentize-js's error output.
fn trim_node_trace(output: &str) -> String {
    let keep: Vec<&str> = output
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("at ") || t.starts_with("Node.js v") || t.starts_with("throw new Error") || t == "^")
                && !(t.len() > 3
                    && t.split(':').next().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
                    && t.contains(": 0x"))
        })
        .collect();
    keep.join("\n").trim().to_string()
}
