//! `wasmfn import`: Kubeless and Kyma objects → function folders and a report, compared with the golden files in
//! tests/import/<case>/expected (regenerate them with `WASMFN_BLESS=1`); malformed input fails naming the problem
//! and writes nothing; imported functions build and serve (inline, zip, and Git from a local repository).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use wasmfn_tests::build::{Run, build_ok};
use wasmfn_tests::guests::repo_root;
use wasmfn_tests::node::{NodeProc, manifest, use_binary};

/// `wasmfn import ARGS` in `dir`, with `stdin` piped in when given.
fn import(dir: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    use std::io::Write;
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .arg("import")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wasmfn");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    Run::from(child.wait_with_output().unwrap())
}

/// Every file under `dir`: relative path → content.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Imports tests/import/CASE/input.yaml and compares the output with CASE/expected.
fn golden(case: &str) -> (PathBuf, tempfile::TempDir) {
    let dir = repo_root().join("tests/import").join(case);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = import(&dir, &["input.yaml", "--out", out.to_str().unwrap()], None);
    assert!(run.ok, "wasmfn import failed:\n{}\n{}", run.stdout, run.stderr);
    let got = tree(&out);
    assert_eq!(run.stdout.as_bytes(), got["report.md"].as_slice(), "the report is printed too");
    let expected = dir.join("expected");
    if std::env::var_os("WASMFN_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&expected);
        for (path, content) in &got {
            std::fs::create_dir_all(expected.join(path).parent().unwrap()).unwrap();
            std::fs::write(expected.join(path), content).unwrap();
        }
    }
    let want = tree(&expected);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "files of {case}");
    for (path, content) in &want {
        assert_eq!(
            String::from_utf8_lossy(&got[path]),
            String::from_utf8_lossy(content),
            "{case}/{path} differs from the golden file (WASMFN_BLESS=1 regenerates them)"
        );
    }
    for (path, content) in &got {
        if path.ends_with("function.yaml") {
            let text = std::str::from_utf8(content).unwrap();
            wasmfn_api::Function::from_yaml(text).unwrap_or_else(|e| panic!("{path}: {e}\n{text}"));
        }
    }
    (out, tmp)
}

#[test]
fn kubeless_functions_and_triggers_match_the_golden_files() {
    let (out, _tmp) = golden("kubeless");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "not yet supported (Kafka source is issue 20)",
        "spec.horizontalPodAutoscaler",
        "secretKeyRef",
        "https://example.com/functions/main.py",
    ] {
        assert!(report.contains(needle), "the report lacks {needle}:\n{report}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("default/greet/lib/words.js")).unwrap(),
        "module.exports = { greeting: 'Hello' };\n"
    );
}

#[test]
fn kyma_functions_and_subscription_match_the_golden_files() {
    let (out, _tmp) = golden("kyma");
    let yaml = std::fs::read_to_string(out.join("shop/orders/function.yaml")).unwrap();
    assert!(
        yaml.contains("exact:") && yaml.contains("type: order.created.v1") && yaml.contains("source: myshop"),
        "{yaml}"
    );
}

#[test]
fn stdin_is_read_and_a_non_empty_out_needs_force() {
    let tmp = tempfile::tempdir().unwrap();
    let input = std::fs::read_to_string(repo_root().join("tests/import/kyma/input.yaml")).unwrap();
    let run = import(tmp.path(), &["--out", "o"], Some(&input));
    assert!(run.ok, "{}", run.stderr);
    assert!(tmp.path().join("o/shop/stats/handler.py").exists());
    let again = import(tmp.path(), &["-", "--out", "o"], Some(&input));
    assert!(!again.ok && again.stderr.contains("not empty"), "{}", again.stderr);
    let forced = import(tmp.path(), &["-", "--out", "o", "--force"], Some(&input));
    assert!(forced.ok, "{}", forced.stderr);
}

#[test]
fn malformed_input_fails_naming_the_problem_and_writes_nothing() {
    let good = "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: {name: ok}\nspec: {runtime: python3.9, handler: h.handler, function: 'x'}\n---\n";
    let cases = [
        ("apiVersion: kubeless.io/v1\nkind: Function\nmetadata: {name: a}\n", "kubeless.io/v1"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", "ConfigMap"),
        (
            "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: {name: z}\nspec: {runtime: nodejs18, handler: h.f, function-content-type: base64+zip, function: aGVsbG8=}\n",
            "not a zip",
        ),
        (
            "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: {name: r}\nspec: {runtime: ruby2.7, handler: h.f, function: x}\n",
            "unknown runtime `ruby2.7`",
        ),
        (
            "apiVersion: serverless.kyma-project.io/v1alpha2\nkind: Function\nmetadata: {name: k}\nspec: {runtime: go1, source: {inline: {source: x}}}\n",
            "unknown runtime `go1`",
        ),
        ("apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: {name: ../../etc}\nspec: {}\n", "metadata.name"),
        ("kind: [unclosed\n", "does not parse"),
    ];
    for (doc, needle) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let run = import(tmp.path(), &["--out", "out"], Some(&format!("{good}{doc}")));
        assert!(!run.ok, "accepted:\n{doc}");
        assert!(run.stderr.contains(needle), "the error for\n{doc}\ndoes not name `{needle}`:\n{}", run.stderr);
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "output was left behind: {left:?}");
    }
}

/// A function's answer to a POST of `{"name": "Ada"}` with a CloudEvent type.
async fn answer(node: &NodeProc, name: &str) -> (u16, String) {
    let resp = node
        .client
        .post(node.url("default", name, "/"))
        .header("content-type", "application/json")
        .header("ce-type", "order.created")
        .body(r#"{"name": "Ada"}"#)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_functions_build_and_serve_from_inline_zip_and_git_sources() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let (kyma, _k) = golden("kyma");
    let (kubeless, _l) = golden("kubeless");
    // Inline (Kyma `source`, JS) and a Kubeless `base64+zip` body with a named handler and a second file.
    let (orders, _) = build_ok(&kyma.join("shop/orders"), &[]);
    let (greet, _) = build_ok(&kubeless.join("default/greet"), &[]);

    // Git: a Kyma Function whose `gitRepository` is a local repository, imported, then built as the operator's
    // build Job builds `spec.source.git` (`wasmfn build --source git+URL#REF:PATH`).
    let repo = tempfile::tempdir().unwrap();
    let fn_dir = repo.path().join("functions/hello");
    std::fs::create_dir_all(&fn_dir).unwrap();
    std::fs::write(
        fn_dir.join("handler.js"),
        "module.exports = { main: (event) => `git says hi to ${event.data.name}` };\n",
    )
    .unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git").args(args).current_dir(repo.path()).output().unwrap();
        assert!(ok.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&ok.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "add", "."]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fn"]);
    let url = format!("file://{}", repo.path().display());
    let yaml = format!(
        "apiVersion: serverless.kyma-project.io/v1alpha2\nkind: Function\nmetadata: {{name: from-git}}\nspec:\n  \
         runtime: nodejs20\n  source:\n    gitRepository: {{url: \"{url}\", baseDir: functions/hello, reference: main}}\n"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = import(tmp.path(), &["--out", out.to_str().unwrap()], Some(&yaml));
    assert!(run.ok, "{}", run.stderr);
    let imported: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(out.join("default/from-git/function.yaml")).unwrap()).unwrap();
    let src = &imported["spec"]["source"]["git"];
    let arg = format!(
        "git+{}#{}:{}",
        src["url"].as_str().unwrap(),
        src["ref"].as_str().unwrap(),
        src["path"].as_str().unwrap()
    );
    let from_git = wasmfn_tests::guests::out_dir().join(format!("from-git-{}.wasm", std::process::id()));
    let built = Run::from(wasmfn_tests::build::wasmfn(&[
        "build",
        "--source",
        &arg,
        "--template",
        "js",
        "-o",
        from_git.to_str().unwrap(),
    ]));
    assert!(built.ok, "{}", built.stderr);

    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start(data.path(), "");
    for (name, wasm) in [("orders", &orders), ("greet", &greet), ("from-git", &from_git)] {
        node.deploy_ok(&manifest(name, wasm, "")).await;
    }
    let (status, body) = answer(&node, "orders").await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((&body["received"]["name"], body["type"].as_str()), (&serde_json::json!("Ada"), Some("order.created")));
    assert_eq!(answer(&node, "greet").await, (200, "Hello, Ada".to_string()));
    assert_eq!(answer(&node, "from-git").await, (200, "git says hi to Ada".to_string()));
}
