//! `wasmfn build --source`: function folders fetched from a real git repository, a real S3-compatible server
//! (s3s-fs on loopback) and inline code, built with the real Python template; `--push` to a real registry and
//! `--report` for a Kubernetes Job's termination message.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use wasmfn_tests::build::{Run, build_ok, wasmfn_env};
use wasmfn_tests::node::use_binary;
use wasmfn_tests::registry::RegistryProc;
use wasmfn_tests::s3::{ACCESS_KEY, S3Server, SECRET_KEY, dead_endpoint, tar_gz};

/// A request/response-style Python function answering `body`.
fn handler(body: &str) -> String {
    format!("from wasmfn import Response\n\n\ndef handle(request):\n    return Response({body:?})\n")
}

/// A function folder: `function.yaml` (template python) and `handler.py`.
fn write_function(dir: &Path, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let manifest = "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: hello\nspec:\n  build:\n    template: python\n";
    std::fs::write(dir.join("function.yaml"), manifest).unwrap();
    std::fs::write(dir.join("handler.py"), handler(body)).unwrap();
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git is needed for the source tests");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `wasmfn build --source SRC -o OUT --report FILE [extra]` with `env`; the run and the report.
fn build_source(source: &str, extra: &[&str], env: &[(&str, &str)]) -> (Run, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (out, report) = (tmp.path().join("out.wasm"), tmp.path().join("report"));
    let mut args = vec!["build", "--source", source, "-o", out.to_str().unwrap(), "--report", report.to_str().unwrap()];
    args.extend_from_slice(extra);
    let run = Run::from(wasmfn_env(&args, env));
    let report = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("no report ({e}): {}", run.stderr));
    assert_eq!(run.ok, out.exists(), "a component is written exactly when the build succeeds: {}", run.stderr);
    (run, report)
}

/// A successful build's component digest, from its report (which must agree with stdout).
fn built(source: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let (run, report) = build_source(source, extra, env);
    assert!(run.ok, "wasmfn build --source {source} failed:\n{}\n{}", run.stdout, run.stderr);
    let json: Value = serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"));
    let digest = json["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:") && run.stdout.contains(&digest), "{report}\n{}", run.stdout);
    assert!(json.get("image").is_none(), "no --push, no image: {report}");
    digest
}

/// A failing build's stderr and report; the report is the error, prefixed and within 4096 bytes.
fn failed(source: &str, extra: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let (run, report) = build_source(source, extra, env);
    assert!(!run.ok, "wasmfn build --source {source} should have failed:\n{}", run.stdout);
    assert!(report.starts_with("build failed: "), "{report}");
    assert!(report.len() <= 4096, "{} bytes", report.len());
    (run.stderr, report)
}

/// The digest a local `wasmfn build` of a folder holding `body`'s function gives.
fn local_digest(body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_function(dir.path(), body);
    let (_, run) = build_ok(dir.path(), &[]);
    run.stdout.split_whitespace().find(|w| w.starts_with("sha256:")).unwrap().to_string()
}

#[test]
fn git_tags_branches_and_commits_build_the_version_they_name() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "-q", "-b", "main"]);
    let mut commits = Vec::new();
    for v in ["v1", "v2"] {
        write_function(&r.join("functions/hello"), &format!("hello from git {v}\n"));
        git(r, &["add", "."]);
        git(r, &["commit", "-q", "-m", v]);
        git(r, &["tag", v]);
        commits.push(git(r, &["rev-parse", "HEAD"]));
    }
    let url = r.display().to_string();
    let v1 = built(&format!("git+{url}#v1:functions/hello"), &[], &[]);
    let v2 = built(&format!("git+file://{url}#v2:functions/hello"), &[], &[]);
    assert_ne!(v1, v2, "the two tags hold different handlers");
    assert_eq!(built(&format!("git+{url}#{}:functions/hello", commits[0]), &[], &[]), v1, "v1 by commit");
    assert_eq!(built(&format!("git+{url}#:functions/hello"), &[], &[]), v2, "HEAD is v2");
    // The same content built from a local folder: the same component.
    assert_eq!(local_digest("hello from git v1\n"), v1);
    assert_eq!(local_digest("hello from git v2\n"), v2);

    let (stderr, report) = failed(&format!("git+{url}#v9:functions/hello"), &[], &[]);
    let missing_ref = format!("ref `v9` not found in git repository {url} (branches and tags: main, v1, v2)");
    assert!(stderr.contains(&missing_ref) && report.contains(&missing_ref), "{stderr}\n{report}");
    let (stderr, _) = failed(&format!("git+{url}#v1:functions/nope"), &[], &[]);
    assert!(stderr.contains("`functions/nope` is not a folder in the checkout of"), "{stderr}");
    assert!(stderr.contains(&format!("{url} at v1")), "{stderr}");
    let (stderr, _) = failed(&format!("git+{url}-gone#v1"), &[], &[]);
    assert!(stderr.contains(&format!("git repository {url}-gone not found or not readable")), "{stderr}");
}

#[test]
fn an_s3_archive_builds_and_s3_failures_are_named() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let s3 = S3Server::start();
    s3.bucket("functions");
    let folder = tempfile::tempdir().unwrap();
    write_function(folder.path(), "hello from s3\n");
    s3.put("functions", "teams/a/hello.tar.gz", tar_gz(folder.path(), "hello"));
    s3.put("functions", "notes.txt", b"not an archive\n".to_vec());
    let creds = [("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY)];
    let source = |key: &str| format!("s3://functions/{key}?endpoint={}&region=us-east-1", s3.endpoint);

    let digest = built(&source("teams/a/hello.tar.gz"), &[], &creds);
    assert_eq!(digest, local_digest("hello from s3\n"), "the archive's single folder is the function");
    // The endpoint may come from AWS_ENDPOINT_URL instead.
    let env = [creds[0], creds[1], ("AWS_ENDPOINT_URL", s3.endpoint.as_str())];
    assert_eq!(built("s3://functions/teams/a/hello.tar.gz", &[], &env), digest);

    let wrong = [("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", "not-the-secret")];
    let (stderr, report) = failed(&source("teams/a/hello.tar.gz"), &[], &wrong);
    let denied = format!("access denied reading s3://functions/teams/a/hello.tar.gz at {}", s3.endpoint);
    assert!(stderr.contains(&denied) && report.contains(&denied), "{stderr}");

    let (stderr, _) = failed(&source("teams/a/gone.tar.gz"), &[], &creds);
    let missing = format!("S3 object `teams/a/gone.tar.gz` not found in bucket `functions` at {}", s3.endpoint);
    assert!(stderr.contains(&missing), "{stderr}");
    let (stderr, _) = failed(&format!("s3://nobucket/k.tgz?endpoint={}", s3.endpoint), &[], &creds);
    // s3s-fs answers NoSuchKey for a missing bucket too (AWS and MinIO say NoSuchBucket).
    assert!(stderr.contains("`k.tgz` not found in bucket `nobucket`"), "{stderr}");

    let (stderr, _) = failed(&source("notes.txt"), &[], &creds);
    assert!(stderr.contains("s3://functions/notes.txt is not an archive"), "{stderr}");
    let (stderr, _) = failed(&source("teams/a/hello.tar.gz"), &["--source-max-bytes", "64"], &creds);
    assert!(stderr.contains("s3://functions/teams/a/hello.tar.gz is larger than the limit of 64 bytes"), "{stderr}");

    let dead = dead_endpoint();
    let started = std::time::Instant::now();
    let (stderr, _) = failed(&format!("s3://functions/teams/a/hello.tar.gz?endpoint={dead}"), &[], &creds);
    assert!(stderr.contains(&format!("S3 endpoint {dead} is not reachable")), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "a down endpoint fails fast");
}

#[test]
fn inline_code_is_built_with_its_template() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("code"), handler("hello from inline\n")).unwrap();
    std::fs::write(dir.path().join("dependencies"), "# no packages\n").unwrap();
    let source = format!("inline:{}", dir.path().display());
    let digest = built(&source, &["--template", "python"], &[]);

    // The same handler from a folder with the same requirements.txt is the same component.
    let local = tempfile::tempdir().unwrap();
    write_function(local.path(), "hello from inline\n");
    std::fs::write(local.path().join("requirements.txt"), "# no packages\n").unwrap();
    let (_, run) = build_ok(local.path(), &[]);
    assert!(run.stdout.contains(&digest), "{digest} expected: {}", run.stdout);

    let (stderr, report) = failed(&source, &[], &[]);
    let needs = "an inline: source needs --template (one of js, python, rust)";
    assert!(stderr.contains(needs) && report.contains(needs), "{stderr}");
    let (stderr, _) = failed(&format!("inline:{}/nothing", dir.path().display()), &["--template", "python"], &[]);
    assert!(stderr.contains("no `code` file"), "{stderr}");
}

/// `--push` reports the image pinned by digest, and pulling it gives the component back.
#[test]
fn push_reports_the_pinned_image() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let reg = RegistryProc::start(None);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("code"), handler("hello from the registry\n")).unwrap();
    let reference = format!("{}/fns/hello:v1", reg.addr);
    let source = format!("inline:{}", dir.path().display());
    let (run, report) = build_source(&source, &["--template", "python", "--push", &reference, "--insecure"], &[]);
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    let json: Value = serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"));
    let image = json["image"].as_str().unwrap();
    assert!(image.starts_with(&format!("{}/fns/hello@sha256:", reg.addr)), "{report}");
    assert!(run.stdout.contains(&format!("pushed {reference}")) && run.stdout.contains(image), "{}", run.stdout);

    let pulled = tempfile::tempdir().unwrap();
    let file = pulled.path().join("c.wasm");
    let run = Run::from(wasmfn_env(&["pull", image, "-o", file.to_str().unwrap(), "--insecure"], &[]));
    assert!(run.ok, "{}", run.stderr);
    let bytes = std::fs::read(&file).unwrap();
    let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
    assert_eq!(json["digest"].as_str(), Some(digest.as_str()), "the report names the component pushed");
}

/// A compiler error is in the report; a long one keeps its end within the 4096 bytes Kubernetes reads.
#[test]
fn the_report_of_a_failed_build_holds_the_compiler_message() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("code"), "def handle(request):\n    return (\n\ndef broken(:\n").unwrap();
    let (stderr, report) = failed(&format!("inline:{}", dir.path().display()), &["--template", "python"], &[]);
    assert!(stderr.contains("SyntaxError") && report.contains("SyntaxError"), "{report}");
    assert!(report.contains("handler.py\", line "), "the file and line: {report}");

    let long = tempfile::tempdir().unwrap();
    let code = "raise RuntimeError('start ' + 'x' * 6000 + ' THE END')\n\n\ndef handle(request):\n    return 'x'\n";
    std::fs::write(long.path().join("code"), code).unwrap();
    let (_, report) = failed(&format!("inline:{}", long.path().display()), &["--template", "python"], &[]);
    assert!(report.starts_with("build failed: …"), "cut at the front: {}", &report[..40]);
    assert!(report.trim_end().ends_with("THE END"), "the end is kept: {}", &report[report.len() - 200..]);
    assert!(report.len() > 3800, "as much as fits is kept: {} bytes", report.len());
}
