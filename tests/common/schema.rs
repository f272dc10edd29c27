//! Validates fowld lines against `protocol/schemas/`: the subset of JSON Schema those files use
//! (type, const, enum, required, properties, additionalProperties, minimum, maximum,
//! exclusiveMinimum, pattern `^[0-9a-f]{64}$`).

use std::path::PathBuf;

use serde_json::Value;

fn schema(dir: &str, kind: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("protocol/schemas")
        .join(dir)
        .join(format!("{kind}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no schema for kind {kind:?} ({})", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        _ => panic!("schema type {t} not supported"),
    }
}

/// Problems of `v` against `s`, with `at` naming the place.
pub fn problems(s: &Value, v: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    match &s["type"] {
        Value::String(t) if !type_ok(t, v) => out.push(format!("{at}: not a {t}")),
        Value::Array(ts) if !ts.iter().any(|t| type_ok(t.as_str().unwrap(), v)) => {
            out.push(format!("{at}: none of {ts:?}"))
        }
        _ => {}
    }
    if let Some(c) = s.get("const") {
        if c != v {
            out.push(format!("{at}: not {c}"));
        }
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        if !options.contains(v) {
            out.push(format!("{at}: {v} not in {options:?}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            out.push(format!("{at}: {n} below minimum"));
        }
        if s.get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            out.push(format!("{at}: {n} above maximum"));
        }
        if s.get("exclusiveMinimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n <= m)
        {
            out.push(format!("{at}: {n} not above exclusiveMinimum"));
        }
    }
    if let (Some(p), Some(text)) = (s.get("pattern").and_then(Value::as_str), v.as_str()) {
        assert_eq!(p, "^[0-9a-f]{64}$", "pattern not supported");
        if !(text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        {
            out.push(format!("{at}: does not match {p}"));
        }
    }
    if let Some(obj) = v.as_object() {
        for r in s["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap()) {
                out.push(format!("{at}: missing {r}"));
            }
        }
        let props = s["properties"].as_object();
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => out.extend(problems(ps, val, &format!("{at}.{k}"))),
                None if s["additionalProperties"] == Value::Bool(false) => {
                    out.push(format!("{at}: unexpected field {k}"))
                }
                None => {}
            }
        }
    }
    out
}

fn check(dir: &str, v: &Value) {
    let kind = v["kind"].as_str().unwrap_or_else(|| panic!("no kind: {v}"));
    let p = problems(&schema(dir, kind), v, kind);
    assert!(p.is_empty(), "{v} breaks its schema: {p:?}");
}

/// Panics unless `v` is a valid fowld output line.
pub fn check_output(v: &Value) {
    check("output", v)
}

/// Panics unless `v` is a valid fowld command.
pub fn check_input(v: &Value) {
    check("input", v)
}
