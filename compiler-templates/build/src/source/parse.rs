//! Source strings: parsing (`FromStr`) and printing (`Display`, without credentials).

use super::{Source, SourceError};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Git { url, reference, path } => {
                write!(f, "git+{}", redact(url))?;
                if reference.is_some() || path.is_some() {
                    write!(f, "#{}", reference.as_deref().unwrap_or(""))?;
                }
                if let Some(p) = path {
                    write!(f, ":{}", p.display())?;
                }
                Ok(())
            }
            Source::S3 { bucket, key, endpoint, region, path } => {
                write!(f, "s3://{bucket}/{key}")?;
                let query: Vec<String> = [("endpoint", endpoint), ("region", region)]
                    .iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                    .collect();
                if !query.is_empty() {
                    write!(f, "?{}", query.join("&"))?;
                }
                if let Some(p) = path {
                    write!(f, "#{}", p.display())?;
                }
                Ok(())
            }
            Source::Inline { dir } => write!(f, "inline:{}", dir.display()),
        }
    }
}

impl FromStr for Source {
    type Err = SourceError;

    fn from_str(input: &str) -> Result<Source, SourceError> {
        let invalid = |reason: String| SourceError::Invalid { input: input.to_string(), reason };
        if let Some(rest) = input.strip_prefix("git+") {
            let (url, fragment) = rest.split_once('#').map_or((rest, None), |(u, f)| (u, Some(f)));
            if url.is_empty() {
                return Err(invalid("no repository URL after `git+`".into()));
            }
            if url.starts_with('-') || url.chars().any(char::is_control) {
                return Err(invalid("the repository URL cannot start with `-` or hold control characters".into()));
            }
            let (reference, path) = match fragment {
                None => (None, None),
                Some(f) => f.split_once(':').map_or((Some(f), None), |(r, p)| (Some(r), Some(p))),
            };
            let reference = reference.filter(|r| !r.is_empty());
            if let Some(r) = reference {
                check_ref(r).map_err(invalid)?;
            }
            let path = path.map(subpath).transpose().map_err(invalid)?.flatten();
            return Ok(Source::Git { url: url.to_string(), reference: reference.map(str::to_string), path });
        }
        if let Some(rest) = input.strip_prefix("s3://") {
            let (rest, fragment) = rest.split_once('#').map_or((rest, None), |(r, f)| (r, Some(f)));
            let (location, query) = rest.split_once('?').map_or((rest, None), |(l, q)| (l, Some(q)));
            let Some((bucket, key)) = location.split_once('/').filter(|(b, k)| !b.is_empty() && !k.is_empty()) else {
                return Err(invalid("expected s3://BUCKET/KEY".into()));
            };
            if !bucket.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
                return Err(invalid(format!("`{bucket}` is not a bucket name")));
            }
            if key.ends_with('/') {
                return Err(invalid(format!("`{key}` names a folder, not an archive object")));
            }
            let (mut endpoint, mut region) = (None, None);
            for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_decode(v).ok_or_else(|| invalid(format!("bad percent-encoding in `{pair}`")))?;
                match k {
                    "endpoint" if v.starts_with("http://") || v.starts_with("https://") => endpoint = Some(v),
                    "endpoint" => return Err(invalid(format!("endpoint `{v}` is not an http(s) URL"))),
                    "region" if !v.is_empty() => region = Some(v),
                    _ => return Err(invalid(format!("unknown parameter `{k}` (expected endpoint=URL, region=R)"))),
                }
            }
            let path = fragment.map(subpath).transpose().map_err(invalid)?.flatten();
            return Ok(Source::S3 { bucket: bucket.into(), key: key.into(), endpoint, region, path });
        }
        if let Some(dir) = input.strip_prefix("inline:") {
            if dir.is_empty() {
                return Err(invalid("no folder after `inline:`".into()));
            }
            return Ok(Source::Inline { dir: PathBuf::from(dir) });
        }
        Err(invalid("unknown kind of source".into()))
    }
}

/// Rejects what `git` could take for an option or that is not a ref name.
fn check_ref(r: &str) -> Result<(), String> {
    let bad = r.starts_with('-')
        || r.contains("..")
        || r.chars().any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c));
    if bad { Err(format!("`{r}` is not a git branch, tag or commit")) } else { Ok(()) }
}

/// A folder inside a checkout or archive: relative, without `..`. Empty means the root.
fn subpath(p: &str) -> Result<Option<PathBuf>, String> {
    let path = Path::new(p.trim_end_matches('/'));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(format!("the folder `{p}` must be relative and without `..`")),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// `url` without the password or token of `scheme://user:secret@host/…`: for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority = rest.split('/').next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[authority.len()..]),
        None => url.to_string(),
    }
}

/// `%XX` decoding of a query value.
fn percent_decode(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
