//! The protobuf request bodies typed clients send (`kubectl create namespace|quota|rolebinding`
//! sends `application/vnd.kubernetes.protobuf`): the `k8s\0` + `runtime.Unknown` envelope and
//! the messages of the types written that way, decoded into the JSON the rest of the server
//! handles. Field numbers are those of `k8s.io/api`'s `generated.proto`.

use serde_json::{Map, Value, json};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\x00";

/// One field of a message: number and raw value.
enum Field<'a> {
    Varint,
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (num, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => {
                varint(buf, &mut pos)?;
                out.push((num, Field::Varint));
            }
            2 => {
                let len =
                    usize::try_from(varint(buf, &mut pos)?).map_err(|_| "length too large")?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated field")?;
                out.push((num, Field::Bytes(&buf[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            w => return Err(format!("unsupported wire type {w}")),
        }
    }
    Ok(out)
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in a string field".to_string())
}

/// A map<string, X> entry: key 1, value 2.
fn map_entry(b: &[u8]) -> Result<(String, &[u8]), String> {
    let mut k = String::new();
    let mut v: &[u8] = &[];
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => k = string(x)?,
            (2, Field::Bytes(x)) => v = x,
            _ => {}
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) if !x.is_empty() => {
                m.insert("name".into(), json!(string(x)?));
            }
            (2, Field::Bytes(x)) if !x.is_empty() => {
                m.insert("generateName".into(), json!(string(x)?));
            }
            (3, Field::Bytes(x)) if !x.is_empty() => {
                m.insert("namespace".into(), json!(string(x)?));
            }
            (5, Field::Bytes(x)) if !x.is_empty() => {
                m.insert("uid".into(), json!(string(x)?));
            }
            (6, Field::Bytes(x)) if !x.is_empty() => {
                m.insert("resourceVersion".into(), json!(string(x)?));
            }
            (11, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                labels.insert(k, json!(string(v)?));
            }
            (12, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                annotations.insert(k, json!(string(v)?));
            }
            (14, Field::Bytes(x)) => finalizers.push(json!(string(x)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

/// `ResourceQuotaSpec`: hard (1, map<string, Quantity{string = 1}>), scopes (2).
fn quota_spec(b: &[u8]) -> Result<Value, String> {
    let mut hard = Map::new();
    let mut scopes = Vec::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => {
                let (k, q) = map_entry(x)?;
                let mut s = String::new();
                for (qn, qf) in fields(q)? {
                    if let (1, Field::Bytes(v)) = (qn, qf) {
                        s = string(v)?;
                    }
                }
                hard.insert(k, json!(s));
            }
            (2, Field::Bytes(x)) => scopes.push(json!(string(x)?)),
            _ => {}
        }
    }
    let mut spec = json!({"hard": hard});
    if !scopes.is_empty() {
        spec["scopes"] = Value::Array(scopes);
    }
    Ok(spec)
}

fn strings_by_number(b: &[u8], names: &[(u64, &str)]) -> Result<Value, String> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        if let (Some((_, name)), Field::Bytes(x)) = (names.iter().find(|(k, _)| *k == n), f) {
            m.insert((*name).into(), json!(string(x)?));
        }
    }
    Ok(Value::Object(m))
}

/// Decodes a protobuf body of `kind` into its JSON form.
pub fn decode(body: &[u8], kind: &str, api_version: &str) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body without the k8s envelope")?;
    let mut raw: &[u8] = &[];
    let mut body_kind = String::new();
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    if let (2, Field::Bytes(k)) = (tn, tf) {
                        body_kind = string(k)?;
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    if !body_kind.is_empty() && body_kind != kind {
        return Err(format!(
            "object of kind {body_kind:?} cannot be handled as a {kind}"
        ));
    }
    let mut obj = json!({"kind": kind, "apiVersion": api_version});
    for (n, f) in fields(raw)? {
        let Field::Bytes(x) = f else { continue };
        match (kind, n) {
            (_, 1) => obj["metadata"] = object_meta(x)?,
            ("Namespace", 2) => {
                let mut fin = Vec::new();
                for (sn, sf) in fields(x)? {
                    if let (1, Field::Bytes(v)) = (sn, sf) {
                        fin.push(json!(string(v)?));
                    }
                }
                obj["spec"] = json!({"finalizers": fin});
            }
            ("ResourceQuota", 2) => obj["spec"] = quota_spec(x)?,
            ("RoleBinding", 2) => {
                let s = strings_by_number(
                    x,
                    &[(1, "kind"), (2, "apiGroup"), (3, "name"), (4, "namespace")],
                )?;
                match obj.get_mut("subjects") {
                    Some(Value::Array(a)) => a.push(s),
                    _ => obj["subjects"] = json!([s]),
                }
            }
            ("RoleBinding", 3) => {
                obj["roleRef"] = strings_by_number(x, &[(1, "apiGroup"), (2, "kind"), (3, "name")])?
            }
            _ => {}
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_kubectl_create_namespace() {
        // The body kubectl 1.35 sends for `kubectl create namespace demo1`.
        let body: &[u8] = &[
            0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x4e, 0x61,
            0x6d, 0x65, 0x73, 0x70, 0x61, 0x63, 0x65, 0x12, 0x1d, 0x0a, 0x15, 0x0a, 0x05, 0x64,
            0x65, 0x6d, 0x6f, 0x31, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00,
            0x38, 0x00, 0x42, 0x00, 0x12, 0x00, 0x1a, 0x02, 0x0a, 0x00, 0x1a, 0x00, 0x22, 0x00,
        ];
        let v = decode(body, "Namespace", "v1").expect("test value");
        assert_eq!(v["metadata"]["name"], "demo1");
        assert_eq!(v["kind"], "Namespace");
        assert!(decode(body, "ResourceQuota", "v1").is_err());
        assert!(decode(b"{}", "Namespace", "v1").is_err());
    }
}
