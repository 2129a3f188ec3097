use super::*;
use std::process::Command;

fn parse(s: &str) -> Source {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn parse_err(s: &str) -> String {
    match s.parse::<Source>() {
        Ok(src) => panic!("{s} parsed as {src:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn git_sources_parse() {
    assert_eq!(
        parse("git+https://host/org/repo.git#main:functions/hello"),
        Source::Git {
            url: "https://host/org/repo.git".into(),
            reference: Some("main".into()),
            path: Some("functions/hello".into())
        }
    );
    assert_eq!(
        parse("git+file:///tmp/repo#v1.2:hello/"),
        Source::Git { url: "file:///tmp/repo".into(), reference: Some("v1.2".into()), path: Some("hello".into()) }
    );
    let sha = "0123456789abcdef0123456789abcdef01234567";
    assert_eq!(
        parse(&format!("git+/abs/path/repo#{sha}")),
        Source::Git { url: "/abs/path/repo".into(), reference: Some(sha.into()), path: None }
    );
    // Default ref with a folder; no fragment at all; scp-style URLs keep their colon.
    assert_eq!(parse("git+/r#:./fn"), Source::Git { url: "/r".into(), reference: None, path: Some("fn".into()) });
    assert_eq!(parse("git+/r"), Source::Git { url: "/r".into(), reference: None, path: None });
    assert_eq!(
        parse("git+git@example.com:org/repo.git#v2"),
        Source::Git { url: "git@example.com:org/repo.git".into(), reference: Some("v2".into()), path: None }
    );
    for s in ["git+https://host/org/repo.git#main:functions/hello", "git+/r#:fn", "git+/r"] {
        assert_eq!(parse(s).to_string(), s);
    }
}

#[test]
fn credentials_in_git_urls_are_not_shown() {
    let s = parse("git+https://bot:s3cret@host/org/repo.git#main:fn");
    assert_eq!(s.to_string(), "git+https://***@host/org/repo.git#main:fn");
    assert!(matches!(&s, Source::Git { url, .. } if url.contains("s3cret")), "git is given the credentials");
    assert_eq!(redact("git@host:org/repo.git"), "git@host:org/repo.git");
    assert_eq!(redact("https://host/a@b"), "https://host/a@b");
}

#[test]
fn s3_sources_parse() {
    assert_eq!(
        parse("s3://fns/teams/a/hello.tar.gz?endpoint=http%3A%2F%2F127.0.0.1:9000&region=eu-west-1#src/hello"),
        Source::S3 {
            bucket: "fns".into(),
            key: "teams/a/hello.tar.gz".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("eu-west-1".into()),
            path: Some("src/hello".into()),
        }
    );
    let plain = parse("s3://b/k.zip");
    assert_eq!(plain, Source::S3 { bucket: "b".into(), key: "k.zip".into(), endpoint: None, region: None, path: None });
    assert_eq!(plain.to_string(), "s3://b/k.zip");
    let s = "s3://b/k.tgz?endpoint=http://127.0.0.1:1&region=r#fn";
    assert_eq!(parse(s).to_string(), s);
}

#[test]
fn inline_sources_parse() {
    assert_eq!(parse("inline:/src"), Source::Inline { dir: "/src".into() });
    assert_eq!(parse("inline:rel/dir").to_string(), "inline:rel/dir");
}

#[test]
fn bad_sources_are_rejected_with_the_reason() {
    let cases = [
        ("https://host/repo.git", "unknown kind of source"),
        ("git+", "no repository URL"),
        ("git+--upload-pack=evil#main", "cannot start with `-`"),
        ("git+/r#--orphan", "`--orphan` is not a git branch, tag or commit"),
        ("git+/r#main:../etc", "must be relative and without `..`"),
        ("git+/r#main:/etc", "must be relative"),
        ("s3://bucket", "expected s3://BUCKET/KEY"),
        ("s3:///key", "expected s3://BUCKET/KEY"),
        ("s3://b/dir/", "names a folder"),
        ("s3://b/k?endpoint=ftp://x", "is not an http(s) URL"),
        ("s3://b/k?colour=red", "unknown parameter `colour`"),
        ("s3://b/k?endpoint=%zz", "bad percent-encoding"),
        ("s3://b/k#a/../../x", "without `..`"),
        ("inline:", "no folder"),
    ];
    for (input, reason) in cases {
        let err = parse_err(input);
        assert!(err.contains(reason), "{input}: {err}");
        assert!(err.contains("expected git+URL#REF:PATH"), "{input}: the forms are listed: {err}");
    }
}

#[test]
fn names_come_from_the_folder_or_the_repository() {
    assert_eq!(parse("git+https://h/org/My_Repo.git#main").name_hint().as_deref(), Some("my-repo"));
    assert_eq!(parse("git+/r#main:functions/hello").name_hint().as_deref(), Some("hello"));
    assert_eq!(parse("s3://b/a/hello-py.tar.gz").name_hint().as_deref(), Some("hello-py"));
    assert_eq!(parse("s3://b/a.zip#x/api").name_hint().as_deref(), Some("api"));
    assert_eq!(parse("inline:/src").name_hint(), None);
}

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with `fn/handler.py` in two tagged versions, and a third commit on `main` that is not tagged.
fn repo() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(d, &["init", "-q", "-b", "main"]);
    std::fs::create_dir(d.join("fn")).unwrap();
    let mut shas = Vec::new();
    for v in ["v1", "v2", "v3"] {
        std::fs::write(d.join("fn/handler.py"), format!("VERSION = '{v}'\n")).unwrap();
        run(d, &["add", "."]);
        run(d, &["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", v]);
        if v != "v3" {
            run(d, &["tag", v]);
        }
        shas.push(run(d, &["rev-parse", "HEAD"]));
    }
    (dir, shas)
}

async fn fetched(source: &str) -> Result<String, SourceError> {
    let dest = tempfile::tempdir().unwrap();
    let folder = parse(source).fetch(dest.path()).await?;
    Ok(std::fs::read_to_string(folder.join("handler.py")).unwrap())
}

#[tokio::test]
async fn git_fetches_tags_branches_commits_and_names_what_is_missing() {
    let (repo, shas) = repo();
    let r = repo.path().display();
    assert_eq!(fetched(&format!("git+{r}#v1:fn")).await.unwrap(), "VERSION = 'v1'\n");
    assert_eq!(fetched(&format!("git+file://{r}#v2:fn")).await.unwrap(), "VERSION = 'v2'\n");
    assert_eq!(fetched(&format!("git+{r}#:fn")).await.unwrap(), "VERSION = 'v3'\n", "the default is HEAD");
    assert_eq!(fetched(&format!("git+{r}#main:fn")).await.unwrap(), "VERSION = 'v3'\n");
    assert_eq!(fetched(&format!("git+{r}#{}:fn", shas[0])).await.unwrap(), "VERSION = 'v1'\n");
    assert_eq!(fetched(&format!("git+{r}#{}:fn", &shas[1][..10])).await.unwrap(), "VERSION = 'v2'\n");

    let err = fetched(&format!("git+{r}#v9:fn")).await.unwrap_err().to_string();
    assert!(err.contains("ref `v9` not found in git repository") && err.contains("main, v1"), "{err}");
    let err = fetched(&format!("git+{r}#{}:fn", "f".repeat(40))).await.unwrap_err().to_string();
    assert!(err.contains(&format!("ref `{}` not found", "f".repeat(40))), "{err}");
    let err = fetched(&format!("git+{r}#v1:nope")).await.unwrap_err().to_string();
    assert!(err.contains("`nope` is not a folder in the checkout of") && err.contains("at v1"), "{err}");
    let err = fetched(&format!("git+{r}/missing#v1")).await.unwrap_err().to_string();
    assert!(err.contains("not found or not readable") && err.contains("missing"), "{err}");
    assert!(err.contains("does not appear to be a git repository") || err.contains("does not exist"), "{err}");
}

/// A folder symlink in the checkout that points outside it is not followed.
#[tokio::test]
async fn git_subfolder_cannot_escape_through_a_symlink() {
    let (repo, _) = repo();
    let d = repo.path();
    std::os::unix::fs::symlink("/etc", d.join("out")).unwrap();
    run(d, &["add", "."]);
    run(d, &["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "link"]);
    let err = fetched(&format!("git+{}#main:out", d.display())).await.unwrap_err().to_string();
    assert!(err.contains("`out` is not a folder in the checkout"), "{err}");
}

#[tokio::test]
async fn inline_needs_a_builder_and_template() {
    let err = parse("inline:/nowhere").fetch(Path::new("/tmp/unused-wasmfn-test")).await.unwrap_err();
    assert!(err.to_string().contains("needs a template"), "{err}");
}

#[tokio::test]
async fn inline_code_and_dependencies_go_into_the_scaffold() {
    let cache = tempfile::tempdir().unwrap();
    let builder = Builder::new(&crate::default_templates_dir(), cache.path()).unwrap();
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let options = |t| FetchOptions { inline: Some((&builder, t)), ..Default::default() };
    let err = parse(&format!("inline:{}", src.path().display())).fetch_with(dest.path(), &options("python")).await;
    assert!(err.unwrap_err().to_string().contains("no `code` file"));

    std::fs::write(src.path().join("code"), "def handle(request):\n    return 'hi'\n").unwrap();
    std::fs::write(src.path().join("dependencies"), "python-slugify==8.0.4\n").unwrap();
    let source = parse(&format!("inline:{}", src.path().display()));
    let folder = source.fetch_with(&dest.path().join("py"), &options("python")).await.unwrap();
    let read = |f: &str| std::fs::read_to_string(folder.join(f)).unwrap();
    assert_eq!(read("handler.py"), "def handle(request):\n    return 'hi'\n");
    assert_eq!(read("requirements.txt"), "python-slugify==8.0.4\n");
    assert!(read("function.yaml").contains("template: python"));

    // Rust: the code is lib.rs, the dependencies the whole Cargo.toml.
    let folder = source.fetch_with(&dest.path().join("rs"), &options("rust")).await.unwrap();
    assert_eq!(std::fs::read_to_string(folder.join("src/lib.rs")).unwrap(), read_src(&src, "code"));
    assert_eq!(std::fs::read_to_string(folder.join("Cargo.toml")).unwrap(), read_src(&src, "dependencies"));
    let err = source.fetch_with(&dest.path().join("x"), &options("cobol")).await.unwrap_err();
    assert!(err.to_string().contains("unknown template `cobol`"), "{err}");
}

fn read_src(dir: &tempfile::TempDir, f: &str) -> String {
    std::fs::read_to_string(dir.path().join(f)).unwrap()
}

mod archives;
