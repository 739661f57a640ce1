//! A small XML element tree for untrusted input (XML-RPC bodies and the documents OpenNebula
//! returns in them): bounded depth and size, no DTDs or external entities, attributes ignored
//! except the element name's local part. Parsing never panics; every error says where.

use quick_xml::Reader;
use quick_xml::events::Event;

/// Deepest nesting accepted (OpenNebula documents are a handful of levels deep).
pub const MAX_DEPTH: usize = 64;
/// Largest document accepted, in bytes.
pub const MAX_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name (namespace prefixes dropped).
    pub name: String,
    pub children: Vec<Element>,
    /// Text and CDATA directly inside this element, entities resolved.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML: {0}")]
pub struct XmlError(pub String);

impl Element {
    pub fn new(name: impl Into<String>) -> Element {
        Element {
            name: name.into(),
            ..Default::default()
        }
    }

    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child with this name.
    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the first child with this name.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// The first descendant along `path` (`"TEMPLATE/DISK/SIZE"`).
    pub fn path(&self, path: &str) -> Option<&Element> {
        path.split('/').try_fold(self, |e, step| e.child(step))
    }
}

/// Parses one document into its root element.
pub fn parse(input: &str) -> Result<Element, XmlError> {
    if input.len() > MAX_BYTES {
        return Err(XmlError(format!(
            "document of {} bytes is larger than {MAX_BYTES}",
            input.len()
        )));
    }
    let mut reader = Reader::from_str(input);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let at = reader.buffer_position();
        let ev = reader
            .read_event()
            .map_err(|e| XmlError(format!("at byte {at}: {e}")))?;
        match ev {
            Event::Start(s) => {
                if root.is_some() {
                    return Err(XmlError("content after the root element".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError(format!("nesting deeper than {MAX_DEPTH}")));
                }
                stack.push(Element::new(local(s.local_name().as_ref())?));
            }
            Event::Empty(s) => {
                let e = Element::new(local(s.local_name().as_ref())?);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(e),
                    None if root.is_none() => root = Some(e),
                    None => return Err(XmlError("content after the root element".into())),
                }
            }
            Event::End(_) => {
                let done = stack
                    .pop()
                    .ok_or_else(|| XmlError(format!("at byte {at}: unexpected end tag")))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let raw = t
                    .decode()
                    .map_err(|e| XmlError(format!("at byte {at}: {e}")))?;
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&raw);
                } else if !raw.trim().is_empty() {
                    return Err(XmlError(format!("at byte {at}: text outside the root")));
                }
            }
            Event::CData(c) => {
                let raw = c
                    .decode()
                    .map_err(|e| XmlError(format!("at byte {at}: {e}")))?;
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&raw);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| XmlError(format!("at byte {at}: {e}")))?
                        .map(String::from)
                } else {
                    let name = r
                        .decode()
                        .map_err(|e| XmlError(format!("at byte {at}: {e}")))?;
                    quick_xml::escape::resolve_predefined_entity(&name).map(String::from)
                };
                let Some(s) = resolved else {
                    return Err(XmlError(format!("at byte {at}: unknown entity")));
                };
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&s);
                }
            }
            Event::DocType(_) => {
                return Err(XmlError("DOCTYPE declarations are not accepted".into()));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError("document ends inside an element".into()));
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

fn local(name: &[u8]) -> Result<String, XmlError> {
    std::str::from_utf8(name)
        .map(str::to_owned)
        .map_err(|_| XmlError("element name is not UTF-8".into()))
}

/// Escapes text for element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_cdata_entities_and_paths() {
        let e = parse(
            "<?xml version=\"1.0\"?><A><B>x &amp; &#65;</B><C><![CDATA[<raw>]]></C><D><E>5</E></D><F/></A>",
        )
        .expect("valid in this test");
        assert_eq!(e.name, "A");
        assert_eq!(e.text_of("B"), Some("x & A"));
        assert_eq!(e.text_of("C"), Some("<raw>"));
        assert_eq!(e.path("D/E").map(|e| e.text.as_str()), Some("5"));
        assert!(e.child("F").is_some());
    }

    #[test]
    fn refuses_malformed_deep_and_doctype_input() {
        for bad in [
            "",
            "<A>",
            "<A></B>",
            "<A/><B/>",
            "text",
            "<!DOCTYPE x [<!ENTITY e \"boom\">]><A>&e;</A>",
            "<A>&bogus;</A>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn escape_round_trips() {
        let s = "a<b>&\"c'";
        let e = parse(&format!("<X>{}</X>", escape(s))).expect("valid in this test");
        assert_eq!(e.text, s);
    }
}
