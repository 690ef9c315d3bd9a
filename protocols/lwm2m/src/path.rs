//! LwM2M paths: `/obj[/inst[/res[/resinst]]]` (TS 1.2 Core §6.1), ordered object first, a
//! parent before its children.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::error::PathError;

/// The largest valid id; 65535 is reserved (TS 1.2 Core §7.1).
pub const MAX_ID: u16 = 65534;

/// A path of one to four ids: object, object instance, resource, resource instance.
///
/// Ordering is lexicographic on the ids, so a path sorts right before its descendants.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    // Unused slots are zero so the derived `Eq` and `Hash` agree with `ids()`.
    ids: [u16; 4],
    depth: u8,
}

impl Path {
    /// `/obj`.
    pub fn object(obj: u16) -> Result<Self, PathError> {
        Self::new(&[obj])
    }

    /// `/obj/inst`.
    pub fn instance(obj: u16, inst: u16) -> Result<Self, PathError> {
        Self::new(&[obj, inst])
    }

    /// `/obj/inst/res`.
    pub fn resource(obj: u16, inst: u16, res: u16) -> Result<Self, PathError> {
        Self::new(&[obj, inst, res])
    }

    /// `/obj/inst/res/resinst`.
    pub fn resource_instance(obj: u16, inst: u16, res: u16, ri: u16) -> Result<Self, PathError> {
        Self::new(&[obj, inst, res, ri])
    }

    /// A path from one to four ids, each at most [`MAX_ID`].
    pub fn new(ids: &[u16]) -> Result<Self, PathError> {
        if ids.is_empty() {
            return Err(PathError::Empty);
        }
        if ids.len() > 4 {
            return Err(PathError::TooDeep);
        }
        let mut path = Path { ids: [0; 4], depth: 0 };
        for &id in ids {
            if id > MAX_ID {
                return Err(PathError::OutOfRange(id.into()));
            }
            path.ids[usize::from(path.depth)] = id;
            path.depth += 1;
        }
        Ok(path)
    }

    /// A path from URI-Path segments, e.g. `["3", "0", "1"]` (an empty trailing segment, as in
    /// `/3/0/`, is ignored).
    pub fn from_segments<S: AsRef<str>>(segments: &[S]) -> Result<Self, PathError> {
        let mut segments = segments.iter().map(AsRef::as_ref).collect::<Vec<_>>();
        if segments.last() == Some(&"") && segments.len() > 1 {
            segments.pop();
        }
        if segments.len() > 4 {
            return Err(PathError::TooDeep);
        }
        let mut ids = [0u16; 4];
        for (slot, s) in ids.iter_mut().zip(&segments) {
            *slot = parse_id(s)?;
        }
        Self::new(&ids[..segments.len()])
    }

    /// The ids, one to four.
    pub fn ids(&self) -> &[u16] {
        &self.ids[..usize::from(self.depth)]
    }

    /// The number of ids: 1 object, 2 instance, 3 resource, 4 resource instance.
    pub fn depth(&self) -> usize {
        usize::from(self.depth)
    }

    /// The object id.
    pub fn object_id(&self) -> u16 {
        self.ids[0]
    }

    /// The object instance id, if the path has one.
    pub fn instance_id(&self) -> Option<u16> {
        self.level(1)
    }

    /// The resource id, if the path has one.
    pub fn resource_id(&self) -> Option<u16> {
        self.level(2)
    }

    /// The resource instance id, if the path has one.
    pub fn resource_instance_id(&self) -> Option<u16> {
        self.level(3)
    }

    fn level(&self, i: u8) -> Option<u16> {
        (self.depth > i).then(|| self.ids[usize::from(i)])
    }

    /// This path with one more id, or `None` at depth four or for an id over [`MAX_ID`].
    pub fn child(&self, id: u16) -> Option<Self> {
        if self.depth >= 4 || id > MAX_ID {
            return None;
        }
        let mut p = *self;
        p.ids[usize::from(p.depth)] = id;
        p.depth += 1;
        Some(p)
    }

    /// The path one level up, `None` for an object path.
    pub fn parent(&self) -> Option<Self> {
        if self.depth <= 1 {
            return None;
        }
        let mut p = *self;
        p.depth -= 1;
        p.ids[usize::from(p.depth)] = 0;
        Some(p)
    }

    /// Whether `self` is `other` or one of its descendants.
    pub fn starts_with(&self, other: &Path) -> bool {
        self.ids().starts_with(other.ids())
    }

    /// The path truncated to at most `depth` levels (at least one).
    pub fn truncated(&self, depth: usize) -> Self {
        let depth = depth.clamp(1, self.depth());
        let mut p = *self;
        for slot in &mut p.ids[depth..] {
            *slot = 0;
        }
        // depth ≤ 4: the cast cannot truncate.
        p.depth = depth as u8;
        p
    }
}

fn parse_id(s: &str) -> Result<u16, PathError> {
    let bytes = s.as_bytes();
    if bytes.is_empty()
        || bytes.len() > 5
        || !bytes.iter().all(u8::is_ascii_digit)
        || (bytes.len() > 1 && bytes[0] == b'0')
    {
        return Err(PathError::NotAnId(s.chars().take(16).collect()));
    }
    let v: u32 = s.parse().map_err(|_| PathError::NotAnId(s.to_owned()))?;
    u16::try_from(v)
        .ok()
        .filter(|&id| id <= MAX_ID)
        .ok_or(PathError::OutOfRange(v))
}

impl FromStr for Path {
    type Err = PathError;

    /// `/3/0/1` (the leading `/` is optional; empty segments are not allowed but for a trailing `/`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix('/').unwrap_or(s);
        if s.is_empty() {
            return Err(PathError::Empty);
        }
        let segments: Vec<&str> = s.split('/').take(6).collect();
        Self::from_segments(&segments)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for id in self.ids() {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

impl Ord for Path {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ids().cmp(other.ids())
    }
}

impl PartialOrd for Path {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_displays() {
        for s in ["/3", "/3/0", "/3/0/1", "/3/0/6/1", "/65534/65534/0/0"] {
            let p: Path = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        assert_eq!("3/0".parse::<Path>().unwrap().to_string(), "/3/0");
        assert_eq!("/3/0/".parse::<Path>().unwrap().to_string(), "/3/0");
        let p = Path::from_segments(&["3303", "0", "5700"]).unwrap();
        assert_eq!(
            (p.object_id(), p.instance_id(), p.resource_id()),
            (3303, Some(0), Some(5700))
        );
        assert_eq!(p.resource_instance_id(), None);
    }

    #[test]
    fn rejects() {
        for (s, e) in [
            ("", PathError::Empty),
            ("/", PathError::Empty),
            ("/3/0/1/2/3", PathError::TooDeep),
            ("/3//1", PathError::NotAnId(String::new())),
            ("/3/x", PathError::NotAnId("x".into())),
            ("/3/-1", PathError::NotAnId("-1".into())),
            ("/3/+1", PathError::NotAnId("+1".into())),
            ("/03", PathError::NotAnId("03".into())),
            ("/65535", PathError::OutOfRange(65535)),
            ("/99999", PathError::OutOfRange(99999)),
            ("/999999", PathError::NotAnId("999999".into())),
        ] {
            assert_eq!(s.parse::<Path>(), Err(e), "{s:?}");
        }
        assert_eq!(Path::new(&[1, 2, 3, 4, 5]), Err(PathError::TooDeep));
        assert_eq!(Path::new(&[65535]), Err(PathError::OutOfRange(65535)));
    }

    #[test]
    fn orders_parent_first() {
        let mut v: Vec<Path> = ["/3/0/6/1", "/3/0", "/1/0/1", "/3/0/6", "/3", "/3/0/10", "/3/0/6/0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        let s: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["/1/0/1", "/3", "/3/0", "/3/0/6", "/3/0/6/0", "/3/0/6/1", "/3/0/10"]);
    }

    #[test]
    fn navigation() {
        let p: Path = "/3/0/6".parse().unwrap();
        assert_eq!(p.child(1).unwrap().to_string(), "/3/0/6/1");
        assert_eq!(p.parent().unwrap(), "/3/0".parse().unwrap());
        assert_eq!(p.parent().unwrap().parent().unwrap().parent(), None);
        assert!(p.child(1).unwrap().child(1).is_none());
        assert!(p.starts_with(&"/3".parse().unwrap()));
        assert!(!p.starts_with(&"/3/1".parse().unwrap()));
        assert_eq!(p.truncated(2), "/3/0".parse().unwrap());
    }
}
