//! OpenNebula templates: the attribute syntax (`NAME="x"`, `NIC=[NETWORK_ID="1", IP="..."]`) and
//! the XML form pyone sends for nested dictionaries (`<TEMPLATE><NIC><IP>..</IP></NIC></TEMPLATE>`),
//! into one attribute list rendered back as the XML OpenNebula returns (CDATA values).

use http_kit::xml;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    Single(String),
    Vector(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub attrs: Vec<(String, AttrValue)>,
}

impl Template {
    /// Parses either syntax; attribute names are upper-cased as OpenNebula does.
    pub fn parse(input: &str) -> Result<Template, String> {
        let trimmed = input.trim_start();
        if trimmed.starts_with('<') {
            return from_xml(trimmed);
        }
        Parser {
            s: input.as_bytes(),
            i: 0,
        }
        .template()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find_map(|(k, v)| match v {
            AttrValue::Single(s) if k == name => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn vectors<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [(String, String)]> {
        self.attrs.iter().filter_map(move |(k, v)| match v {
            AttrValue::Vector(items) if k == name => Some(items.as_slice()),
            _ => None,
        })
    }

    /// Replaces (or adds) a single attribute.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = AttrValue::Single(value.into());
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name.to_owned(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.attrs.retain(|(k, _)| k != name);
    }

    /// `one.*.update` with merge: attributes of `other` replace those of the same name.
    pub fn merge(&mut self, other: Template) {
        for (k, _) in &other.attrs {
            self.remove(k);
        }
        self.attrs.extend(other.attrs);
    }

    /// `<TAG>` with the attributes as elements, values in CDATA like OpenNebula.
    pub fn to_xml(&self, tag: &str) -> String {
        let mut out = format!("<{tag}>");
        for (k, v) in &self.attrs {
            out.push_str(&attr_xml(k, v));
        }
        out.push_str(&format!("</{tag}>"));
        out
    }
}

pub fn attr_xml(k: &str, v: &AttrValue) -> String {
    match v {
        AttrValue::Single(s) => format!("<{k}>{}</{k}>", cdata(s)),
        AttrValue::Vector(items) => {
            let mut out = format!("<{k}>");
            for (ik, iv) in items {
                out.push_str(&format!("<{ik}>{}</{ik}>", cdata(iv)));
            }
            out.push_str(&format!("</{k}>"));
            out
        }
    }
}

/// A CDATA section holding `s` (a `]]>` inside is split across two sections).
pub fn cdata(s: &str) -> String {
    format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"))
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !n.as_bytes()[0].is_ascii_digit()
}

fn from_xml(input: &str) -> Result<Template, String> {
    let root = xml::parse(input).map_err(|e| e.to_string())?;
    let mut t = Template::default();
    for c in &root.children {
        let name = c.name.to_ascii_uppercase();
        if !valid_name(&name) {
            return Err(format!("invalid attribute name {name:?}"));
        }
        if c.children.is_empty() {
            t.attrs
                .push((name, AttrValue::Single(c.text.trim().to_owned())));
        } else {
            let mut items = Vec::new();
            for i in &c.children {
                let iname = i.name.to_ascii_uppercase();
                if !valid_name(&iname) {
                    return Err(format!("invalid attribute name {iname:?}"));
                }
                items.push((iname, i.text.trim().to_owned()));
            }
            t.attrs.push((name, AttrValue::Vector(items)));
        }
    }
    Ok(t)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("syntax error, {what} at character {}", self.i)
    }

    fn skip_ws(&mut self, newlines: bool) {
        while let Some(&c) = self.s.get(self.i) {
            if c == b' ' || c == b'\t' || c == b'\r' || (newlines && c == b'\n') {
                self.i += 1;
            } else if c == b'#' {
                while self.s.get(self.i).is_some_and(|&c| c != b'\n') {
                    self.i += 1;
                }
            } else {
                break;
            }
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            self.i += 1;
        }
        let n = std::str::from_utf8(&self.s[start..self.i])
            .map_err(|_| self.err("bad name"))?
            .to_ascii_uppercase();
        if !valid_name(&n) {
            return Err(self.err("expected an attribute name"));
        }
        Ok(n)
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    /// A quoted string (`\"` and `\\` escapes) or a bare word up to `,` `]` or end of line.
    fn value(&mut self, in_vector: bool) -> Result<String, String> {
        let mut out = Vec::new();
        if self.s.get(self.i) == Some(&b'"') {
            self.i += 1;
            loop {
                match self.s.get(self.i) {
                    None => return Err(self.err("unterminated string")),
                    Some(b'"') => {
                        self.i += 1;
                        break;
                    }
                    Some(b'\\') if matches!(self.s.get(self.i + 1), Some(b'"' | b'\\')) => {
                        out.push(self.s[self.i + 1]);
                        self.i += 2;
                    }
                    Some(&c) => {
                        out.push(c);
                        self.i += 1;
                    }
                }
            }
        } else {
            while let Some(&c) = self.s.get(self.i) {
                if c == b'\n' || (in_vector && (c == b',' || c == b']')) {
                    break;
                }
                out.push(c);
                self.i += 1;
            }
            while out.last().is_some_and(|c| c.is_ascii_whitespace()) {
                out.pop();
            }
        }
        String::from_utf8(out).map_err(|_| self.err("value is not UTF-8"))
    }

    fn template(&mut self) -> Result<Template, String> {
        let mut t = Template::default();
        loop {
            self.skip_ws(true);
            if self.i >= self.s.len() {
                return Ok(t);
            }
            let name = self.name()?;
            self.skip_ws(false);
            self.expect(b'=')?;
            self.skip_ws(false);
            if self.s.get(self.i) == Some(&b'[') {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws(true);
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        break;
                    }
                    let iname = self.name()?;
                    self.skip_ws(true);
                    self.expect(b'=')?;
                    self.skip_ws(true);
                    let v = self.value(true)?;
                    items.push((iname, v));
                    self.skip_ws(true);
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {}
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
                t.attrs.push((name, AttrValue::Vector(items)));
            } else {
                let v = self.value(false)?;
                t.attrs.push((name, AttrValue::Single(v)));
            }
            self.skip_ws(false);
            match self.s.get(self.i) {
                None | Some(b'\n') | Some(b',') => {
                    if self.i < self.s.len() {
                        self.i += 1;
                    }
                }
                _ => return Err(self.err("expected end of line")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_attribute_syntax() {
        let t = Template::parse(
            "NAME = \"a \\\"b\\\"\"\nVN_MAD=vxlan\n# comment\nAR=[TYPE=\"IP4\", IP=\"10.0.1.1\",\n SIZE=\"253\"]\nnic = [ network_id = 3 ]\n",
        )
        .expect("valid in this test");
        assert_eq!(t.get("NAME"), Some("a \"b\""));
        assert_eq!(t.get("VN_MAD"), Some("vxlan"));
        let ar: Vec<_> = t.vectors("AR").collect();
        assert_eq!(ar[0][2], ("SIZE".into(), "253".into()));
        assert_eq!(
            t.vectors("NIC").next().expect("valid in this test")[0].1,
            "3"
        );
    }

    #[test]
    fn parses_pyone_xml_form() {
        let t = Template::parse(
            "<TEMPLATE><NAME><![CDATA[x]]></NAME><NIC><NETWORK_ID><![CDATA[4]]></NETWORK_ID></NIC></TEMPLATE>",
        )
        .expect("valid in this test");
        assert_eq!(t.get("NAME"), Some("x"));
        assert_eq!(
            t.vectors("NIC").next().expect("valid in this test")[0].1,
            "4"
        );
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["=x", "A=\"x", "A=[B=1", "A=[=1]", "1A=2", "A B"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cdata_survives_terminators() {
        let x = format!("<A>{}</A>", cdata("a]]>b"));
        assert_eq!(xml::parse(&x).expect("valid in this test").text, "a]]>b");
    }
}
