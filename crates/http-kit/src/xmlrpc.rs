//! XML-RPC (the protocol of OpenNebula's `/RPC2`): values, `methodCall` and `methodResponse`
//! bodies in both directions, so that a client and a site double share one codec. Input is
//! untrusted: parsing goes through [`crate::xml::parse`] and never panics.

use std::fmt::Write as _;

use crate::xml::{self, Element, escape};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    String(String),
    Double(f64),
    Array(Vec<Value>),
    Struct(Vec<(String, Value)>),
    Nil,
}

impl Value {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum XmlRpcError {
    #[error(transparent)]
    Xml(#[from] xml::XmlError),
    #[error("not an XML-RPC document: {0}")]
    Protocol(String),
    #[error("XML-RPC fault {code}: {message}")]
    Fault { code: i64, message: String },
}

fn write_value(out: &mut String, v: &Value) {
    out.push_str("<value>");
    match v {
        // OpenNebula and Python's xmlrpc read <int>; <i8> only when the value needs it.
        Value::Int(i) if i32::try_from(*i).is_ok() => {
            let _ = write!(out, "<int>{i}</int>");
        }
        Value::Int(i) => {
            let _ = write!(out, "<i8>{i}</i8>");
        }
        Value::Bool(b) => {
            let _ = write!(out, "<boolean>{}</boolean>", u8::from(*b));
        }
        Value::String(s) => {
            let _ = write!(out, "<string>{}</string>", escape(s));
        }
        Value::Double(d) => {
            let _ = write!(out, "<double>{d}</double>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for i in items {
                write_value(out, i);
            }
            out.push_str("</data></array>");
        }
        Value::Struct(members) => {
            out.push_str("<struct>");
            for (k, v) in members {
                let _ = write!(out, "<member><name>{}</name>", escape(k));
                write_value(out, v);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        Value::Nil => out.push_str("<nil/>"),
    }
    out.push_str("</value>");
}

/// The body of a `methodCall`.
pub fn call_body(method: &str, params: &[Value]) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n<methodCall><methodName>");
    out.push_str(&escape(method));
    out.push_str("</methodName><params>");
    for p in params {
        out.push_str("<param>");
        write_value(&mut out, p);
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>\n");
    out
}

/// The body of a successful `methodResponse`.
pub fn response_body(value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n<methodResponse><params><param>");
    write_value(&mut out, value);
    out.push_str("</param></params></methodResponse>\n");
    out
}

/// The body of a `methodResponse` fault.
pub fn fault_body(code: i64, message: &str) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n<methodResponse><fault>");
    write_value(
        &mut out,
        &Value::Struct(vec![
            ("faultCode".into(), Value::Int(code)),
            ("faultString".into(), Value::String(message.into())),
        ]),
    );
    out.push_str("</fault></methodResponse>\n");
    out
}

fn read_value(v: &Element) -> Result<Value, XmlRpcError> {
    if v.name != "value" {
        return Err(XmlRpcError::Protocol(format!(
            "expected <value>, found <{}>",
            v.name
        )));
    }
    let Some(inner) = v.children.first() else {
        // A bare <value>text</value> is a string.
        return Ok(Value::String(v.text.clone()));
    };
    let bad = |what: &str| XmlRpcError::Protocol(format!("bad <{what}> value"));
    Ok(match inner.name.as_str() {
        "int" | "i4" | "i8" => Value::Int(inner.text.trim().parse().map_err(|_| bad("int"))?),
        "boolean" => match inner.text.trim() {
            "1" => Value::Bool(true),
            "0" => Value::Bool(false),
            _ => return Err(bad("boolean")),
        },
        "string" | "dateTime.iso8601" | "base64" => Value::String(inner.text.clone()),
        "double" => Value::Double(inner.text.trim().parse().map_err(|_| bad("double"))?),
        "nil" => Value::Nil,
        "array" => {
            let data = inner.child("data").ok_or_else(|| bad("array"))?;
            Value::Array(
                data.children("value")
                    .map(read_value)
                    .collect::<Result<_, _>>()?,
            )
        }
        "struct" => {
            let mut members = Vec::new();
            for m in inner.children("member") {
                let name = m.text_of("name").ok_or_else(|| bad("member"))?;
                let value = m.child("value").ok_or_else(|| bad("member"))?;
                members.push((name.to_owned(), read_value(value)?));
            }
            Value::Struct(members)
        }
        other => {
            return Err(XmlRpcError::Protocol(format!(
                "unknown value type <{other}>"
            )));
        }
    })
}

/// Parses a `methodCall` into its method name and parameters.
pub fn parse_call(body: &str) -> Result<(String, Vec<Value>), XmlRpcError> {
    let root = xml::parse(body)?;
    if root.name != "methodCall" {
        return Err(XmlRpcError::Protocol(format!(
            "expected <methodCall>, found <{}>",
            root.name
        )));
    }
    let method = root
        .text_of("methodName")
        .ok_or_else(|| XmlRpcError::Protocol("no <methodName>".into()))?
        .to_owned();
    let params = match root.child("params") {
        None => Vec::new(),
        Some(p) => p
            .children("param")
            .map(|param| {
                param
                    .child("value")
                    .ok_or_else(|| XmlRpcError::Protocol("<param> without <value>".into()))
                    .and_then(read_value)
            })
            .collect::<Result<_, _>>()?,
    };
    Ok((method, params))
}

/// Parses a `methodResponse`: its one value, or [`XmlRpcError::Fault`].
pub fn parse_response(body: &str) -> Result<Value, XmlRpcError> {
    let root = xml::parse(body)?;
    if root.name != "methodResponse" {
        return Err(XmlRpcError::Protocol(format!(
            "expected <methodResponse>, found <{}>",
            root.name
        )));
    }
    if let Some(fault) = root.child("fault") {
        let v = fault
            .child("value")
            .ok_or_else(|| XmlRpcError::Protocol("<fault> without <value>".into()))
            .and_then(read_value)?;
        let mut code = 0;
        let mut message = String::new();
        if let Value::Struct(members) = v {
            for (k, v) in members {
                match (k.as_str(), v) {
                    ("faultCode", Value::Int(c)) => code = c,
                    ("faultString", Value::String(s)) => message = s,
                    _ => {}
                }
            }
        }
        return Err(XmlRpcError::Fault { code, message });
    }
    root.child("params")
        .and_then(|p| p.child("param"))
        .and_then(|p| p.child("value"))
        .ok_or_else(|| XmlRpcError::Protocol("no <params><param><value>".into()))
        .and_then(read_value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_and_response_round_trip() {
        let params = vec![
            Value::from("oneadmin:pw"),
            Value::Int(-2),
            Value::Int(1 << 40),
            Value::Bool(false),
            Value::from("NAME=\"a<b>&\""),
            Value::Array(vec![Value::Int(1), Value::Double(1.5), Value::Nil]),
            Value::Struct(vec![("k".into(), Value::from("v"))]),
        ];
        let (m, p) =
            parse_call(&call_body("one.vn.allocate", &params)).expect("valid in this test");
        assert_eq!(m, "one.vn.allocate");
        assert_eq!(p, params);
        let resp = Value::Array(vec![
            Value::Bool(true),
            Value::from("<VDC><ID>1</ID></VDC>"),
            Value::Int(0),
        ]);
        assert_eq!(
            parse_response(&response_body(&resp)).expect("valid in this test"),
            resp
        );
        assert_eq!(
            parse_response(&fault_body(-32700, "parse error")),
            Err(XmlRpcError::Fault {
                code: -32700,
                message: "parse error".into()
            })
        );
    }

    #[test]
    fn python_style_bodies_parse() {
        // What Python's xmlrpc.client sends: <int>, bare text as string, <boolean>.
        let body = "<?xml version='1.0'?>\n<methodCall>\n<methodName>one.vm.action</methodName>\n<params>\n<param>\n<value><string>u:p</string></value>\n</param>\n<param>\n<value>terminate-hard</value>\n</param>\n<param>\n<value><int>7</int></value>\n</param>\n</params>\n</methodCall>\n";
        let (m, p) = parse_call(body).expect("valid in this test");
        assert_eq!(m, "one.vm.action");
        assert_eq!(
            p,
            vec![
                Value::from("u:p"),
                Value::from("terminate-hard"),
                Value::Int(7)
            ]
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for bad in [
            "<methodCall/>",
            "<methodResponse/>",
            "<x/>",
            "<methodResponse><params><param><value><int>x</int></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><blob/></value></param></params></methodResponse>",
        ] {
            assert!(
                parse_call(bad).is_err() || parse_response(bad).is_err(),
                "{bad}"
            );
        }
        assert!(parse_response("<methodResponse/>").is_err());
    }
}
