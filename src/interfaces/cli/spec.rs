//! The `--local`/`--remote` specifier grammar of Python fowl (reference §9.2), extended with
//! bracketed IPv6 addresses (`bind=[::1]`) and unix socket paths (`name:/path` or `name:./path`).

use std::path::PathBuf;

use crate::forward::{LocalSpec, RemoteSpec};

/// Splits on `:` outside `[...]`.
fn segments(spec: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut start, mut depth) = (Vec::new(), 0, 0i32);
    for (i, c) in spec.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => {
                out.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("unbalanced brackets in {spec:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced brackets in {spec:?}"));
    }
    out.push(&spec[start..]);
    Ok(out)
}

fn port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| "Ports must be an integer from 1 to 65535".to_string())
}

/// `[::1]` -> `::1`; other hosts unchanged.
fn host(s: &str) -> String {
    s.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(s)
        .to_string()
}

fn unix_path(s: &str) -> Option<PathBuf> {
    (s.starts_with('/') || s.starts_with("./") || s.starts_with("../")).then(|| PathBuf::from(s))
}

/// A specifier taken apart: its name, then either a unix socket path or the `:` segments after
/// the name (a port, then `key=value` options; at most three).
enum Parts<'a> {
    Unix(String, PathBuf),
    Segments(String, Vec<&'a str>),
}

fn parts(spec: &str) -> Result<Parts<'_>, String> {
    let (first, rest) = spec.split_once(':').unwrap_or((spec, ""));
    if first.is_empty() {
        return Err(format!("{spec:?}: the service name is empty"));
    }
    if let Some(path) = unix_path(rest) {
        return Ok(Parts::Unix(first.into(), path));
    }
    let segs = segments(spec)?;
    if segs.len() > 4 {
        return Err(format!("Too many colons: {} > 3", segs.len() - 1));
    }
    Ok(Parts::Segments(first.into(), segs[1..].to_vec()))
}

/// A specifier that does not parse (Python fowl's wording where it has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

impl From<String> for SpecError {
    fn from(s: String) -> SpecError {
        SpecError(s)
    }
}

impl From<&str> for SpecError {
    fn from(s: &str) -> SpecError {
        SpecError(s.into())
    }
}

/// `--local name[:PORT[:bind=ADDR][:remote-connect=PORT]]` or `--local name:/unix/path`.
pub fn parse_local(spec: &str) -> Result<LocalSpec, SpecError> {
    let (name, segs) = match parts(spec)? {
        Parts::Unix(name, path) => {
            return Ok(LocalSpec {
                name,
                listen_unix: Some(path),
                ..Default::default()
            })
        }
        Parts::Segments(name, segs) => (name, segs),
    };
    let mut out = LocalSpec {
        name,
        ..Default::default()
    };
    if let Some(p) = segs.first() {
        out.listen_port = Some(port(p)?);
    }
    for seg in segs.iter().skip(1) {
        match seg.split_once('=') {
            Some(("bind", v)) => out.bind = Some(host(v)),
            Some(("remote-connect", v)) => out.remote_connect_port = Some(port(v)?),
            _ => return Err("--local specifier accepts remote-connect= or bind= only".into()),
        }
    }
    Ok(out)
}

/// `--remote name[:PORT[:listen=PORT][:address=ADDR]]` or `--remote name:/unix/path`.
pub fn parse_remote(spec: &str) -> Result<RemoteSpec, SpecError> {
    let (name, segs) = match parts(spec)? {
        Parts::Unix(name, path) => {
            return Ok(RemoteSpec {
                name,
                connect_unix: Some(path),
                ..Default::default()
            })
        }
        Parts::Segments(name, segs) => (name, segs),
    };
    let mut out = RemoteSpec {
        name,
        ..Default::default()
    };
    if let Some(p) = segs.first().filter(|p| !p.is_empty()) {
        out.local_connect_port = Some(port(p)?);
    }
    for seg in segs.iter().skip(1) {
        match seg.split_once('=') {
            Some(("listen", v)) => out.remote_listen_port = Some(port(v)?),
            Some(("address", v)) => out.connect_address = Some(host(v)),
            Some(_) => return Err("--remote specifier accepts listen= or address= only".into()),
            None => {
                let hint = match seg.parse::<u16>() {
                    Ok(_) => "listen=N".to_string(),
                    Err(_) => format!("address={seg}"),
                };
                return Err(format!(
                    "\"{seg}\": keyword arguments need an = symbol (try with \"{hint}\")"
                )
                .into());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_forms() {
        assert_eq!(parse_local("web").unwrap().name, "web");
        let l = parse_local("foo:8111:bind=192.0.2.7:remote-connect=8222").unwrap();
        assert_eq!(
            (l.listen_port, l.bind.as_deref(), l.remote_connect_port),
            (Some(8111), Some("192.0.2.7"), Some(8222))
        );
        let l = parse_local("v6:8000:bind=[::1]").unwrap();
        assert_eq!(l.bind.as_deref(), Some("::1"));
        let l = parse_local("sock:/tmp/a:b.sock").unwrap();
        assert_eq!(l.listen_unix, Some(PathBuf::from("/tmp/a:b.sock")));
        assert_eq!(
            parse_local("x:0").unwrap_err().to_string(),
            "Ports must be an integer from 1 to 65535"
        );
        assert_eq!(
            parse_local("x:1:listen=2").unwrap_err().to_string(),
            "--local specifier accepts remote-connect= or bind= only"
        );
        assert_eq!(
            parse_local("x:1:a=1:b=2:c=3").unwrap_err().to_string(),
            "Too many colons: 4 > 3"
        );
        assert!(parse_local(":1").is_err());
        assert!(parse_local("x:1:bind=[::1").is_err());
    }

    #[test]
    fn remote_forms() {
        let r = parse_remote("web:8080").unwrap();
        assert_eq!(r.local_connect_port, Some(8080));
        let r = parse_remote("quux:8444:address=[::1]:listen=8333").unwrap();
        assert_eq!(
            (
                r.local_connect_port,
                r.connect_address.as_deref(),
                r.remote_listen_port
            ),
            (Some(8444), Some("::1"), Some(8333))
        );
        let r = parse_remote("app:./run/app.sock").unwrap();
        assert_eq!(r.connect_unix, Some(PathBuf::from("./run/app.sock")));
        assert_eq!(
            parse_remote("x:1:8000").unwrap_err().to_string(),
            "\"8000\": keyword arguments need an = symbol (try with \"listen=N\")"
        );
        assert_eq!(
            parse_remote("x:1:host").unwrap_err().to_string(),
            "\"host\": keyword arguments need an = symbol (try with \"address=host\")"
        );
        assert_eq!(
            parse_remote("x:1:bind=2").unwrap_err().to_string(),
            "--remote specifier accepts listen= or address= only"
        );
    }
}
