//! Image references as `github.com/distribution/reference` normalizes them
//! (`ParseNormalizedNamed`, `FamiliarString`, `TagNameOnly`), for what the
//! docker CLI sends (`busybox` becomes `busybox:latest`) and shows (the
//! `IMAGE` columns drop a digest).

struct Reference {
    /// Familiar name (`busybox`, `foo/bar`, `example.com:5000/x`).
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ separated by `.`, `_`, `__` or runs of `-`.
    if c.is_empty() {
        return false;
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_domain(d: &str) -> bool {
    let host = match d.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|x| x.is_ascii_digit()) => h,
        Some(_) => return false,
        None => d,
    };
    (!host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|x| x.is_ascii_alphanumeric() || x == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        }))
        || (host.starts_with('[') && host.ends_with(']'))
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

fn valid_digest(d: &str) -> bool {
    match d.split_once(':') {
        Some((alg, hex)) => {
            !alg.is_empty()
                && alg
                    .bytes()
                    .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || b"+._-".contains(&x))
                && hex.len() >= 32
                && hex.bytes().all(|x| x.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// `ParseNormalizedNamed`, returning the familiar form of the name.
fn parse(s: &str) -> Option<Reference> {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (s, None),
    };
    if digest.as_deref().is_some_and(|d| !valid_digest(d)) {
        return None;
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (
            &rest[..last_slash + i],
            Some(rest[last_slash + i + 1..].to_string()),
        ),
        None => (rest, None),
    };
    if tag.as_deref().is_some_and(|t| !valid_tag(t)) || name.is_empty() {
        return None;
    }
    // splitDockerDomain
    let (domain, path) = match name.split_once('/') {
        Some((d, p))
            if d.contains('.') || d.contains(':') || d == "localhost" || d.to_lowercase() != d =>
        {
            (d.to_string(), p.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io".to_string()
    } else {
        domain
    };
    if !valid_domain(&domain) || !path.split('/').all(valid_component) {
        return None;
    }
    let familiar = if domain == "docker.io" {
        match path.strip_prefix("library/") {
            Some(p) if !p.contains('/') => p.to_string(),
            _ => path,
        }
    } else {
        format!("{domain}/{path}")
    };
    Some(Reference {
        name: familiar,
        tag,
        digest,
    })
}

/// What the docker client sends for a service's image
/// (`imageWithTagString`: `FamiliarString(TagNameOnly(ref))`): a name
/// without tag nor digest gets `:latest`. `None` if `image` does not parse
/// (docker then sends it unchanged).
pub fn image_with_tag(image: &str) -> Option<String> {
    let r = parse(image)?;
    let mut out = r.name;
    match (&r.tag, &r.digest) {
        (None, None) => out.push_str(":latest"),
        _ => {
            if let Some(t) = &r.tag {
                out.push(':');
                out.push_str(t);
            }
            if let Some(d) = &r.digest {
                out.push('@');
                out.push_str(d);
            }
        }
    }
    Some(out)
}

/// The `IMAGE` column of `service ls` / `service ps`: a tagged reference
/// loses its digest (`busybox:1@sha256:…` shows `busybox:1`); anything else
/// is shown as is.
pub fn image_display(image: &str) -> String {
    match parse(image) {
        Some(Reference {
            name, tag: Some(t), ..
        }) => format!("{name}:{t}"),
        _ => image.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_distribution_reference() {
        assert_eq!(image_with_tag("busybox").as_deref(), Some("busybox:latest"));
        assert_eq!(image_with_tag("host").as_deref(), Some("host:latest"));
        assert_eq!(
            image_with_tag("busybox:local").as_deref(),
            Some("busybox:local")
        );
        assert_eq!(
            image_with_tag("docker.io/library/redis:7").as_deref(),
            Some("redis:7")
        );
        assert_eq!(
            image_with_tag("index.docker.io/foo/bar").as_deref(),
            Some("foo/bar:latest")
        );
        assert_eq!(
            image_with_tag("localhost:5000/x").as_deref(),
            Some("localhost:5000/x:latest")
        );
        assert_eq!(image_with_tag("Busybox"), None);
        let d = "sha256:0aa5f12721b8a0d5d6e0e4c4b4d2e8b1b1a8f8e0c5c2b9e5d0e1f2a3b4c5d6e7";
        assert_eq!(
            image_with_tag(&format!("busybox@{d}")),
            Some(format!("busybox@{d}"))
        );
        assert_eq!(image_display(&format!("busybox:1@{d}")), "busybox:1");
        assert_eq!(
            image_display(&format!("busybox@{d}")),
            format!("busybox@{d}")
        );
        assert_eq!(image_display("docker.io/library/redis:7"), "redis:7");
        assert_eq!(image_display("UPPER"), "UPPER");
    }
}
