//! `wasmfn import`: Kubeless and Kyma objects → function folders and a report, compared with the golden files in
//! tests/import/<case>/expected (regenerate them with `WASMFN_BLESS=1`); malformed input fails naming the problem
//! and writes nothing; an imported Kyma JS function builds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use wasmfn_tests::build::{Run, build_ok};
use wasmfn_tests::guests::repo_root;
use wasmfn_tests::node::use_binary;

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

#[test]
fn an_imported_kyma_js_function_builds() {
    let (out, _tmp) = golden("kyma");
    let (wasm, _) = build_ok(&out.join("shop/orders"), &[]);
    assert!(std::fs::metadata(wasm).unwrap().len() > 0);
}
