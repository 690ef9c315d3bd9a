//! CoRE link format (RFC 6690 §2), as used by the Register and Update payloads and the Discover
//! response (content format 40):
//!
//! ```text
//! Link            = link-value-list
//! link-value-list = [ link-value *[ "," link-value ]]
//! link-value      = "<" URI-Reference ">" *( ";" link-param )
//! link-param      = ( parmname [ "=" ( ptoken / quoted-string ) ] )
//! ```
//!
//! Whitespace around `,` and `;` is tolerated (several clients send `</1/0>, </3/0>`).

use std::fmt;

/// One link: its target and its parameters in the order received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The URI reference between `<` and `>`.
    pub target: String,
    /// `name[=value]` parameters; quoted values are unquoted and unescaped.
    pub params: Vec<LinkParam>,
}

/// A link parameter: `name`, `name=token` or `name="quoted"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkParam {
    /// The parameter name.
    pub name: String,
    /// The value, `None` for a bare name.
    pub value: Option<String>,
}

impl Link {
    /// The value of the first parameter `name` (`Some(None)` for a bare `name`).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.iter().find(|p| p.name == name).map(|p| p.value.as_deref())
    }
}

/// Why a link-format document does not parse: the byte offset where parsing stopped, or too many
/// links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Malformed at this byte offset.
    Syntax(usize),
    /// More links than the limit.
    TooMany(usize),
}

/// Parses a link-format document into at most `max_links` links. The empty document is no links.
pub fn parse(input: &str, max_links: usize) -> Result<Vec<Link>, LinkError> {
    let mut p = Parser {
        s: input.as_bytes(),
        i: 0,
    };
    let mut links = Vec::new();
    p.skip_ws();
    if p.eof() {
        return Ok(links);
    }
    loop {
        if links.len() >= max_links {
            return Err(LinkError::TooMany(max_links));
        }
        links.push(p.link_value(input)?);
        p.skip_ws();
        if p.eof() {
            return Ok(links);
        }
        p.expect(b',')?;
        p.skip_ws();
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), LinkError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(LinkError::Syntax(self.i))
        }
    }

    fn link_value(&mut self, input: &str) -> Result<Link, LinkError> {
        self.expect(b'<')?;
        let start = self.i;
        while let Some(c) = self.peek() {
            // URI-Reference (RFC 3986) has no `<`, `>`, space or control characters.
            if c == b'>' {
                break;
            }
            if c == b'<' || c <= b' ' || c == 0x7f {
                return Err(LinkError::Syntax(self.i));
            }
            self.i += 1;
        }
        // Only ASCII was consumed, so `start..i` lies on char boundaries.
        let target = input.get(start..self.i).ok_or(LinkError::Syntax(start))?.to_owned();
        self.expect(b'>')?;
        let mut params = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() != Some(b';') {
                return Ok(Link { target, params });
            }
            self.i += 1;
            self.skip_ws();
            params.push(self.param(input)?);
        }
    }

    fn param(&mut self, input: &str) -> Result<LinkParam, LinkError> {
        // parmname = 1*( ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" )
        // (RFC 5987 attr-char), plus `*` for extended parameters (RFC 6690 §2).
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"!#$&+-.^_`|~*".contains(&c)) {
            self.i += 1;
        }
        if self.i == start {
            return Err(LinkError::Syntax(self.i));
        }
        let name = input.get(start..self.i).ok_or(LinkError::Syntax(start))?.to_owned();
        self.skip_ws();
        if self.peek() != Some(b'=') {
            return Ok(LinkParam { name, value: None });
        }
        self.i += 1;
        self.skip_ws();
        let value = if self.peek() == Some(b'"') {
            self.i += 1;
            let mut v = Vec::new();
            loop {
                match self.peek() {
                    None => return Err(LinkError::Syntax(self.i)),
                    Some(b'"') => {
                        self.i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        self.i += 1;
                        let c = self.peek().ok_or(LinkError::Syntax(self.i))?;
                        v.push(c);
                        self.i += 1;
                    }
                    Some(c) => {
                        v.push(c);
                        self.i += 1;
                    }
                }
            }
            // The input is a str and escapes only drop ASCII backslashes: still UTF-8.
            String::from_utf8(v).map_err(|_| LinkError::Syntax(self.i))?
        } else {
            // ptoken = 1*ptokenchar; ptokenchar excludes `,` `;` `"` and whitespace among others.
            let start = self.i;
            while matches!(self.peek(), Some(c) if c > b' ' && c != 0x7f && !b",;\"<>".contains(&c)) {
                self.i += 1;
            }
            if self.i == start {
                return Err(LinkError::Syntax(self.i));
            }
            input.get(start..self.i).ok_or(LinkError::Syntax(start))?.to_owned()
        };
        Ok(LinkParam {
            name,
            value: Some(value),
        })
    }
}

/// Writes links back in link format; a value is quoted when it is not a plain token.
pub struct Display<'a>(pub &'a [Link]);

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, link) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "<{}>", link.target)?;
            for p in &link.params {
                write!(f, ";{}", p.name)?;
                if let Some(v) = &p.value {
                    let token = !v.is_empty() && v.bytes().all(|c| c > b' ' && c != 0x7f && !b",;\"<>\\".contains(&c));
                    if token {
                        write!(f, "={v}")?;
                    } else {
                        f.write_str("=\"")?;
                        for c in v.chars() {
                            if c == '"' || c == '\\' {
                                f.write_str("\\")?;
                            }
                            write!(f, "{c}")?;
                        }
                        f.write_str("\"")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_registration_payload() {
        let links = parse(
            r#"</>;rt="oma.lwm2m";ct=11543, </1/0>,</3/0>, </3303>;ver=1.1,</5/0>"#,
            16,
        )
        .unwrap();
        assert_eq!(links.len(), 5);
        assert_eq!(links[0].target, "/");
        assert_eq!(links[0].param("rt"), Some(Some("oma.lwm2m")));
        assert_eq!(links[0].param("ct"), Some(Some("11543")));
        assert_eq!(links[3].param("ver"), Some(Some("1.1")));
        assert_eq!(links[4].params, []);
    }

    #[test]
    fn bare_params_and_escapes() {
        let links = parse(r#"</3/0/1>;obs;title="a \"b\", c""#, 4).unwrap();
        assert_eq!(links[0].param("obs"), Some(None));
        assert_eq!(links[0].param("title"), Some(Some("a \"b\", c")));
        let again = Display(&links).to_string();
        assert_eq!(parse(&again, 4).unwrap(), links);
    }

    #[test]
    fn rejects() {
        for s in [
            "<",
            "</1",
            "/1",
            "</1>,",
            "</1>;",
            "</1>;=3",
            "</1>;a=",
            "</1>;a=\"x",
            "</1> </2>",
            "</1 2>",
        ] {
            assert!(matches!(parse(s, 4), Err(LinkError::Syntax(_))), "{s:?}");
        }
        assert_eq!(parse("</1>,</2>,</3>", 2), Err(LinkError::TooMany(2)));
        assert_eq!(parse("  ", 2), Ok(vec![]));
    }
}
