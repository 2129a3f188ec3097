//! Running the templates' tools: output captured (and fed to the progress heartbeat), shown in full on failure.

use crate::BuildError;
use crate::progress::Step;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// Environment that would redirect or alter a nested toolchain's build.
const SCRUBBED: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "NODE_OPTIONS",
    "PYTHONPATH",
    "PYTHONHOME",
    // Credentials of the build itself (the S3 source, the registry, the node): build scripts, npm and pip
    // hooks run the user's code, which must not read them.
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "WASMFN_REGISTRY_USER",
    "WASMFN_REGISTRY_PASSWORD",
    "WASMFN_ADMIN_TOKEN",
];

/// Runs `cmd` as part of `step`; returns its stdout. A failure carries stderr (and stdout when it is not
/// machine-readable), which is where compilers put their messages.
pub(crate) fn run(step: &Step, cmd: &mut Command, stdout_is_data: bool) -> Result<String, BuildError> {
    for var in SCRUBBED {
        cmd.env_remove(var);
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| {
        BuildError::Failed { step: step.name().to_string(), output: format!("cannot run `{program}`: {e}") }
    })?;
    let mut out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let (stdout, stderr) = std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        let mut text = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            step.note(&line);
            if line.starts_with("warning: ") {
                step.warn(&line);
            }
            text.push_str(&line);
            text.push('\n');
        }
        (reader.join().unwrap_or_default(), text)
    });
    let status =
        child.wait().map_err(|e| BuildError::Failed { step: step.name().to_string(), output: e.to_string() })?;
    if status.success() {
        return Ok(stdout);
    }
    let mut output = stderr.trim_end().to_string();
    if !stdout_is_data && !stdout.trim().is_empty() {
        output = format!("{}\n{output}", stdout.trim_end());
    }
    if output.is_empty() {
        output = format!("`{program}` exited with {status}");
    }
    Err(BuildError::Failed { step: step.name().to_string(), output })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolchains_never_see_the_builds_credentials() {
        let progress = crate::Progress::quiet();
        let step = progress.step("probe");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo ${AWS_SECRET_ACCESS_KEY:-none} ${AWS_ACCESS_KEY_ID:-none} ${KEPT:-none}"])
            .env("AWS_SECRET_ACCESS_KEY", "s3cret")
            .env("AWS_ACCESS_KEY_ID", "AKIA")
            .env("KEPT", "yes");
        assert_eq!(run(&step, &mut cmd, true).unwrap().trim(), "none none yes");
    }
}
