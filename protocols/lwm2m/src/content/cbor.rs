//! A minimal CBOR (RFC 8949) reader and writer for SenML CBOR and LwM2M CBOR: enough of the data
//! model for those formats, with the limits network input needs. A length is checked against the
//! bytes left before anything is allocated (every item takes at least one byte), nesting is
//! capped, and the whole input must be one item.

use crate::error::DecodeError;

/// Nesting depth allowed for arrays, maps and tags; SenML needs 2, LwM2M CBOR 5.
pub(crate) const MAX_DEPTH: usize = 16;

/// A decoded CBOR data item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    /// Major type 0.
    Uint(u64),
    /// Major type 1: the value is `-1 - n`.
    Nint(u64),
    /// Major type 2.
    Bytes(Vec<u8>),
    /// Major type 3.
    Text(String),
    /// Major type 4.
    Array(Vec<Item>),
    /// Major type 5, in the order received.
    Map(Vec<(Item, Item)>),
    /// Major type 6.
    Tag(u64, Box<Item>),
    /// `false` / `true`.
    Bool(bool),
    /// `null`.
    Null,
    /// `undefined` and other simple values.
    Simple(u8),
    /// Half, single or double precision float.
    Float(f64),
}

impl Item {
    /// The integer value, if this is an integer.
    pub(crate) fn as_int(&self) -> Option<i128> {
        match *self {
            Item::Uint(n) => Some(i128::from(n)),
            Item::Nint(n) => Some(-1 - i128::from(n)),
            _ => None,
        }
    }

    /// A short name of the item's type, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Item::Uint(_) | Item::Nint(_) => "integer",
            Item::Bytes(_) => "byte string",
            Item::Text(_) => "text string",
            Item::Array(_) => "array",
            Item::Map(_) => "map",
            Item::Tag(..) => "tag",
            Item::Bool(_) => "boolean",
            Item::Null => "null",
            Item::Simple(_) => "simple value",
            Item::Float(_) => "float",
        }
    }
}

fn syntax(detail: &str) -> DecodeError {
    DecodeError::Syntax {
        format: "CBOR",
        detail: detail.to_owned(),
    }
}

/// Decodes exactly one item from `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Result<Item, DecodeError> {
    let mut r = Reader { b: bytes, i: 0 };
    let item = r.item(0)?;
    if r.i != bytes.len() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(item)
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

/// The break stop code of indefinite-length items.
const BREAK: u8 = 0xff;

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.b.len() - self.i
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let c = *self.b.get(self.i).ok_or(DecodeError::Truncated)?;
        self.i += 1;
        Ok(c)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// The argument of a head with additional information `ai`; `None` for indefinite length.
    fn argument(&mut self, ai: u8) -> Result<Option<u64>, DecodeError> {
        Ok(Some(match ai {
            0..=23 => u64::from(ai),
            24 => self.uint(1)?,
            25 => self.uint(2)?,
            26 => self.uint(4)?,
            27 => self.uint(8)?,
            31 => return Ok(None),
            _ => return Err(syntax("reserved additional information")),
        }))
    }

    /// A definite count that cannot exceed the bytes left, as each element takes at least one.
    fn count(&self, n: u64, per_item: usize) -> Result<usize, DecodeError> {
        usize::try_from(n)
            .ok()
            .filter(|&n| n.checked_mul(per_item).is_some_and(|b| b <= self.remaining()))
            .ok_or(DecodeError::Truncated)
    }

    fn string(&mut self, major: u8, len: Option<u64>) -> Result<Vec<u8>, DecodeError> {
        match len {
            Some(n) => {
                let n = self.count(n, 1)?;
                Ok(self.take(n)?.to_vec())
            }
            None => {
                // Indefinite: definite chunks of the same major type until break (RFC 8949 §3.2.3).
                let mut out = Vec::new();
                loop {
                    let c = self.byte()?;
                    if c == BREAK {
                        return Ok(out);
                    }
                    if c >> 5 != major || c & 0x1f == 31 {
                        return Err(syntax("bad chunk in indefinite-length string"));
                    }
                    let n = self.argument(c & 0x1f)?;
                    out.extend(self.string(major, n)?);
                }
            }
        }
    }

    fn item(&mut self, depth: usize) -> Result<Item, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep(MAX_DEPTH));
        }
        let c = self.byte()?;
        let (major, ai) = (c >> 5, c & 0x1f);
        if major == 7 {
            return self.simple(ai);
        }
        let arg = self.argument(ai)?;
        Ok(match (major, arg) {
            (0, Some(n)) => Item::Uint(n),
            (1, Some(n)) => Item::Nint(n),
            (0 | 1 | 6, None) => return Err(syntax("indefinite length on an integer or tag")),
            (2, n) => Item::Bytes(self.string(2, n)?),
            (3, n) => {
                let b = self.string(3, n)?;
                Item::Text(String::from_utf8(b).map_err(|_| syntax("text string is not UTF-8"))?)
            }
            (4, Some(n)) => {
                let n = self.count(n, 1)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.item(depth + 1)?);
                }
                Item::Array(v)
            }
            (4, None) => {
                let mut v = Vec::new();
                while !self.at_break()? {
                    v.push(self.item(depth + 1)?);
                }
                Item::Array(v)
            }
            (5, Some(n)) => {
                let n = self.count(n, 2)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = self.item(depth + 1)?;
                    v.push((k, self.item(depth + 1)?));
                }
                Item::Map(v)
            }
            (5, None) => {
                let mut v = Vec::new();
                while !self.at_break()? {
                    let k = self.item(depth + 1)?;
                    v.push((k, self.item(depth + 1)?));
                }
                Item::Map(v)
            }
            (6, Some(t)) => Item::Tag(t, Box::new(self.item(depth + 1)?)),
            _ => return Err(syntax("unknown major type")),
        })
    }

    fn at_break(&mut self) -> Result<bool, DecodeError> {
        match self.b.get(self.i) {
            None => Err(DecodeError::Truncated),
            Some(&BREAK) => {
                self.i += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    fn simple(&mut self, ai: u8) -> Result<Item, DecodeError> {
        Ok(match ai {
            20 => Item::Bool(false),
            21 => Item::Bool(true),
            22 => Item::Null,
            0..=19 | 23 => Item::Simple(ai),
            24 => match self.byte()? {
                v @ 32..=255 => Item::Simple(v),
                _ => return Err(syntax("invalid two-byte simple value")),
            },
            25 => Item::Float(half_to_f64(self.uint(2)? as u16)),
            26 => Item::Float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            27 => Item::Float(f64::from_bits(self.uint(8)?)),
            _ => return Err(syntax("unexpected break or reserved simple value")),
        })
    }
}

/// IEEE 754 half precision to double (RFC 8949 Appendix D).
fn half_to_f64(h: u16) -> f64 {
    let exp = (h >> 10) & 0x1f;
    let mant = f64::from(h & 0x3ff);
    let v = match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (mant + 1024.0) * 2f64.powi(i32::from(e) - 25),
    };
    if h & 0x8000 != 0 {
        -v
    } else {
        v
    }
}

/// Appends CBOR items to a buffer, always with definite lengths and the shortest heads.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) out: Vec<u8>,
}

impl Writer {
    fn head(&mut self, major: u8, n: u64) {
        let m = major << 5;
        match n {
            0..=23 => self.out.push(m | n as u8),
            24..=0xff => self.out.extend([m | 24, n as u8]),
            0x100..=0xffff => {
                self.out.push(m | 25);
                self.out.extend((n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.out.push(m | 26);
                self.out.extend((n as u32).to_be_bytes());
            }
            _ => {
                self.out.push(m | 27);
                self.out.extend(n.to_be_bytes());
            }
        }
    }

    pub(crate) fn uint(&mut self, n: u64) {
        self.head(0, n);
    }

    pub(crate) fn int(&mut self, n: i64) {
        if n >= 0 {
            self.head(0, n.unsigned_abs());
        } else {
            // -1 - n ≥ 0 for n < 0, and cannot overflow.
            self.head(1, (-1 - n).unsigned_abs());
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.head(2, b.len() as u64);
        self.out.extend_from_slice(b);
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.head(3, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn array(&mut self, len: usize) {
        self.head(4, len as u64);
    }

    pub(crate) fn map(&mut self, len: usize) {
        self.head(5, len as u64);
    }

    pub(crate) fn bool(&mut self, b: bool) {
        self.out.push(if b { 0xf5 } else { 0xf4 });
    }

    /// Single precision when that is exact, else double.
    pub(crate) fn float(&mut self, v: f64) {
        let single = v as f32;
        if f64::from(single) == v || v.is_nan() {
            self.out.push(0xfa);
            self.out.extend(single.to_bits().to_be_bytes());
        } else {
            self.out.push(0xfb);
            self.out.extend(v.to_bits().to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc8949_appendix_a() {
        let cases = [
            ("00", Item::Uint(0)),
            ("1903e8", Item::Uint(1000)),
            ("1bffffffffffffffff", Item::Uint(u64::MAX)),
            ("3863", Item::Nint(99)),
            ("f93c00", Item::Float(1.0)),
            ("f97bff", Item::Float(65504.0)),
            ("f90001", Item::Float(5.960464477539063e-8)),
            ("fa47c35000", Item::Float(100000.0)),
            ("fb3ff199999999999a", Item::Float(1.1)),
            ("f4", Item::Bool(false)),
            ("f6", Item::Null),
            ("4401020304", Item::Bytes(vec![1, 2, 3, 4])),
            ("6449455446", Item::Text("IETF".into())),
            ("5f42010243030405ff", Item::Bytes(vec![1, 2, 3, 4, 5])),
            (
                "9f018202039f0405ffff",
                Item::Array(vec![
                    Item::Uint(1),
                    Item::Array(vec![Item::Uint(2), Item::Uint(3)]),
                    Item::Array(vec![Item::Uint(4), Item::Uint(5)]),
                ]),
            ),
            (
                "a201020304",
                Item::Map(vec![(Item::Uint(1), Item::Uint(2)), (Item::Uint(3), Item::Uint(4))]),
            ),
            ("c11a514b67b0", Item::Tag(1, Box::new(Item::Uint(1363896240)))),
        ];
        for (h, item) in cases {
            assert_eq!(decode(&hex(h)).unwrap(), item, "{h}");
        }
        assert!(half_to_f64(0x7c00).is_infinite());
        assert!(half_to_f64(0x7e00).is_nan());
        assert_eq!(half_to_f64(0xc400), -4.0);
    }

    #[test]
    fn rejects() {
        for h in [
            "",
            "18",
            "1c",
            "5f01ff",
            "62ff",
            "9b0000000000000010",
            "bb7fffffffffffffff00",
            "a10102ff",
            "9f01",
            "ff",
            "0000",
            "1f",
            "f818",
            "6280ff",
            "c0",
        ] {
            assert!(decode(&hex(h)).is_err(), "{h}");
        }
        let deep = vec![0x81u8; 100];
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep(MAX_DEPTH)));
    }

    #[test]
    fn writer_round_trips() {
        let mut w = Writer::default();
        w.array(9);
        for n in [0i64, 23, 24, 255, 256, 65536, -1, -25, i64::MIN] {
            w.int(n);
        }
        let item = decode(&w.out).unwrap();
        let Item::Array(v) = item else { panic!() };
        let back: Vec<i128> = v.iter().map(|i| i.as_int().unwrap()).collect();
        assert_eq!(back, [0, 23, 24, 255, 256, 65536, -1, -25, i128::from(i64::MIN)]);
        let mut w = Writer::default();
        w.float(1.5);
        assert_eq!(w.out, hex("fa3fc00000"));
        let mut w = Writer::default();
        w.float(1.1);
        assert_eq!(w.out, hex("fb3ff199999999999a"));
    }
}
