//! Topic templates: the `topics` of an ACL rule, a topic filter with placeholders.
//!
//! A template is parsed once, from the configuration, into levels of literal text and
//! placeholders. A check fills the placeholders in place while it walks the levels (see
//! [`levels`](super::levels)): nothing is expanded into a new string on the hot path.
//! [`TopicTemplate::expand`] builds the string for diagnostics and tests.

use std::fmt;
use std::str::FromStr;

use unigate_pubsub::{TopicFilter, MAX_TOPIC_LEN};

use super::levels::{covers_levels, overlaps_levels, Level, LevelText};
use super::{Permission, Request, Subject, TemplateError};

/// The prefix of a literal template (EMQX's `eq`).
const EQ_PREFIX: &str = "eq ";

/// A value a template can refer to, written `${name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Placeholder {
    /// `${clientid}`: [`Subject::client_id`].
    ClientId,
    /// `${username}`: [`Subject::username`].
    Username,
    /// `${cert_cn}`: [`Subject::cert_cn`], the CN of the client certificate.
    CertCn,
}

impl Placeholder {
    const ALL: [Placeholder; 3] = [Placeholder::ClientId, Placeholder::Username, Placeholder::CertCn];

    /// The name between `${` and `}`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::ClientId => "clientid",
            Placeholder::Username => "username",
            Placeholder::CertCn => "cert_cn",
        }
    }

    fn from_name(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }

    fn index(self) -> usize {
        match self {
            Placeholder::ClientId => 0,
            Placeholder::Username => 1,
            Placeholder::CertCn => 2,
        }
    }

    /// The subject's raw value for it, before validation.
    fn value<'a>(self, subject: &Subject<'a>) -> Option<&'a str> {
        match self {
            Placeholder::ClientId => Some(subject.client_id),
            Placeholder::Username => subject.username,
            Placeholder::CertCn => subject.cert_cn,
        }
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${{{}}}", self.name())
    }
}

/// A set of placeholders (which ones a template or a whole ACL uses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PlaceholderSet(u8);

impl PlaceholderSet {
    fn insert(&mut self, p: Placeholder) {
        self.0 |= 1 << p.index();
    }

    fn contains(self, p: Placeholder) -> bool {
        self.0 & (1 << p.index()) != 0
    }

    pub(crate) fn union(self, other: PlaceholderSet) -> PlaceholderSet {
        PlaceholderSet(self.0 | other.0)
    }
}

/// The placeholder values of one subject that are safe to put in a filter level, taken once
/// per check. A value that is absent or unsafe is `None`, and a template using it does not
/// apply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bindings<'a> {
    values: [Option<&'a str>; 3],
}

impl<'a> Bindings<'a> {
    /// Takes and validates the values of `wanted` from `subject`.
    pub(crate) fn new(subject: &Subject<'a>, wanted: PlaceholderSet) -> Bindings<'a> {
        let mut values = [None; 3];
        for p in Placeholder::ALL {
            if wanted.contains(p) {
                values[p.index()] = p.value(subject).filter(|v| is_safe_value(v));
            }
        }
        Bindings { values }
    }

    fn value(&self, p: Placeholder) -> Option<&'a str> {
        self.values[p.index()]
    }
}

/// Whether a value can stand for (part of) one literal level: non-empty, without the wildcards
/// `+` and `#`, the separator `/`, or NUL. Anything else could widen the rule (`a/#` as a user
/// name) or make it mean another level structure.
fn is_safe_value(v: &str) -> bool {
    !v.is_empty() && !v.bytes().any(|b| matches!(b, b'+' | b'#' | b'/' | 0))
}

/// A piece of a literal level.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Var(Placeholder),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// `eq {filter}`: compared as text, never expanded, no wildcard meaning.
    Eq,
    /// A filter whose literal levels may contain placeholders.
    Filter {
        levels: Box<[Level<Box<[Segment]>>]>,
        uses: PlaceholderSet,
        /// The placeholder the whole filter starts with, if it does: its value must not start
        /// with `$`, or a client named `$SYS` would be handed `$SYS/#` by `${clientid}/#`.
        leading: Option<Placeholder>,
    },
}

/// One entry of a rule's `topics`: a topic filter with placeholders, or a literal filter.
///
/// Parsed from text:
///
/// - `devices/${clientid}/#`: a topic filter (MQTT 5 §4.7.1 wildcards) in which `${clientid}`,
///   `${username}` and `${cert_cn}` are replaced, per request, by the subject's values. A
///   placeholder may be all of a level or part of it (`dev-${clientid}`). A `$` not followed by
///   `{` is literal (`$SYS/#`); `${` always starts a placeholder.
/// - `eq a/#`: the literal filter text `a/#` (EMQX's `eq`). It has no wildcard meaning: it
///   applies to a subscription to exactly `a/#`, or a publish to exactly that topic. Placeholders
///   are not allowed in it, since they would not be expanded.
///
/// Either way the text must be a valid, non-shared topic filter (a placeholder counting as
/// plain text). See the [module documentation](super) for how templates apply to requests.
#[derive(Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    /// The text as written, `eq ` prefix included.
    text: Box<str>,
    kind: Kind,
}

impl TopicTemplate {
    /// Parses a template.
    ///
    /// # Errors
    ///
    /// [`TemplateError`]: an unterminated or unknown placeholder, an invalid filter, a shared
    /// subscription filter, or a placeholder after `eq `.
    pub fn parse(text: &str) -> Result<TopicTemplate, TemplateError> {
        let kind = match text.strip_prefix(EQ_PREFIX) {
            Some(literal) => {
                if literal.contains("${") {
                    return Err(TemplateError::PlaceholderInEq);
                }
                if TopicFilter::new(literal)?.is_shared() {
                    return Err(TemplateError::SharedFilter);
                }
                Kind::Eq
            }
            None => parse_filter(text)?,
        };
        Ok(TopicTemplate {
            text: Box::from(text),
            kind,
        })
    }

    /// The text as written, `eq ` prefix included.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is an `eq ` template.
    #[must_use]
    pub fn is_eq(&self) -> bool {
        self.kind == Kind::Eq
    }

    /// Whether it uses `p`.
    #[must_use]
    pub fn uses(&self, p: Placeholder) -> bool {
        self.placeholders().contains(p)
    }

    pub(crate) fn placeholders(&self) -> PlaceholderSet {
        match &self.kind {
            Kind::Eq => PlaceholderSet::default(),
            Kind::Filter { uses, .. } => *uses,
        }
    }

    /// The literal text of an `eq ` template.
    fn literal(&self) -> &str {
        self.text.strip_prefix(EQ_PREFIX).unwrap_or(&self.text)
    }

    /// The filter this template stands for with `subject`'s values: the literal text for an
    /// `eq ` template, `None` when a placeholder's value is missing or unsafe (then the template
    /// applies to nothing).
    ///
    /// For diagnostics and tests: checks compare in place and never build this string.
    #[must_use]
    pub fn expand(&self, subject: &Subject<'_>) -> Option<String> {
        let bindings = Bindings::new(subject, self.placeholders());
        if !self.is_bound(&bindings) {
            return None;
        }
        let Kind::Filter { levels, .. } = &self.kind else {
            return Some(self.literal().to_owned());
        };
        let mut out = String::with_capacity(self.text.len());
        for (i, level) in levels.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            match level {
                Level::Plus => out.push('+'),
                Level::Hash => out.push('#'),
                Level::Text(segments) => {
                    for segment in segments.iter() {
                        match segment {
                            Segment::Literal(text) => out.push_str(text),
                            Segment::Var(p) => out.push_str(bindings.value(*p)?),
                        }
                    }
                }
            }
        }
        Some(out)
    }

    /// Whether this template applies to `request` by `subject` in a rule granting `permission`
    /// (see the [module documentation](super)). Does not allocate.
    #[must_use]
    pub fn applies(&self, permission: Permission, subject: &Subject<'_>, request: Request<'_>) -> bool {
        self.applies_bound(permission, &Bindings::new(subject, self.placeholders()), request)
    }

    /// [`applies`](Self::applies) with the subject's values already taken.
    pub(crate) fn applies_bound(&self, permission: Permission, bindings: &Bindings<'_>, request: Request<'_>) -> bool {
        let Kind::Filter { levels, .. } = &self.kind else {
            return match request {
                Request::Publish(topic) | Request::RetainedRead(topic) => topic.as_str() == self.literal(),
                Request::Subscribe(filter) => filter.filter() == self.literal(),
            };
        };
        if !self.is_bound(bindings) {
            return false;
        }
        let rule = levels.iter().map(|level| match level {
            Level::Plus => Level::Plus,
            Level::Hash => Level::Hash,
            Level::Text(segments) => Level::Text(Filled { segments, bindings }),
        });
        match (request, permission) {
            // A topic is a filter that matches only itself: covering it is matching it.
            (Request::Publish(topic) | Request::RetainedRead(topic), _) => covers_levels(rule, topic.as_str()),
            (Request::Subscribe(filter), Permission::Allow) => covers_levels(rule, filter.filter()),
            (Request::Subscribe(filter), Permission::Deny) => overlaps_levels(rule, filter.filter()),
        }
    }

    /// Whether every placeholder has a safe value (and a leading one does not start with `$`).
    fn is_bound(&self, bindings: &Bindings<'_>) -> bool {
        let Kind::Filter { uses, leading, .. } = &self.kind else {
            return true;
        };
        Placeholder::ALL
            .into_iter()
            .all(|p| !uses.contains(p) || bindings.value(p).is_some())
            && leading.is_none_or(|p| bindings.value(p).is_some_and(|v| !v.starts_with('$')))
    }
}

/// The levels of a non-`eq` template text.
fn parse_filter(text: &str) -> Result<Kind, TemplateError> {
    // Placeholders shrink when checked as `x` below: bound the written length too.
    if text.len() > MAX_TOPIC_LEN {
        return Err(unigate_pubsub::TopicError::TooLong.into());
    }
    let mut uses = PlaceholderSet::default();
    let mut levels = Vec::new();
    let mut skeleton = String::with_capacity(text.len());
    for (i, level) in text.split('/').enumerate() {
        if i > 0 {
            skeleton.push('/');
        }
        levels.push(match level {
            "+" => {
                skeleton.push('+');
                Level::Plus
            }
            "#" => {
                skeleton.push('#');
                Level::Hash
            }
            _ => {
                let segments = parse_segments(level)?;
                for segment in &segments {
                    match segment {
                        Segment::Literal(text) => skeleton.push_str(text),
                        Segment::Var(p) => {
                            uses.insert(*p);
                            skeleton.push('x');
                        }
                    }
                }
                Level::Text(segments.into_boxed_slice())
            }
        });
    }
    // Wildcard placement, NUL, emptiness: the filter rules, with each placeholder as one safe
    // character (a value can never contain `/`, `+`, `#` or NUL, nor be empty).
    if TopicFilter::new(&skeleton)?.is_shared() {
        return Err(TemplateError::SharedFilter);
    }
    let leading = match levels.first() {
        Some(Level::Text(segments)) => match segments.first() {
            Some(Segment::Var(p)) => Some(*p),
            _ => None,
        },
        _ => None,
    };
    Ok(Kind::Filter {
        levels: levels.into_boxed_slice(),
        uses,
        leading,
    })
}

/// The literal text and placeholders of one level.
fn parse_segments(level: &str) -> Result<Vec<Segment>, TemplateError> {
    let mut segments = Vec::new();
    let mut rest = level;
    while let Some((literal, after)) = rest.split_once("${") {
        if !literal.is_empty() {
            segments.push(Segment::Literal(Box::from(literal)));
        }
        let (name, after) = after.split_once('}').ok_or(TemplateError::UnterminatedPlaceholder)?;
        let p = Placeholder::from_name(name).ok_or_else(|| TemplateError::UnknownPlaceholder(name.to_owned()))?;
        segments.push(Segment::Var(p));
        rest = after;
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(Box::from(rest)));
    }
    Ok(segments)
}

/// A template level with its placeholders filled from a subject's bindings.
struct Filled<'t, 'b> {
    segments: &'t [Segment],
    bindings: &'b Bindings<'b>,
}

impl Filled<'_, '_> {
    fn segment<'s>(&'s self, segment: &'s Segment) -> Option<&'s str> {
        match segment {
            Segment::Literal(text) => Some(text),
            Segment::Var(p) => self.bindings.value(*p),
        }
    }
}

impl LevelText for Filled<'_, '_> {
    fn eq_level(&self, level: &str) -> bool {
        let mut rest = level;
        for segment in self.segments {
            match self.segment(segment).and_then(|text| rest.strip_prefix(text)) {
                Some(after) => rest = after,
                None => return false,
            }
        }
        rest.is_empty()
    }

    fn starts_with_dollar(&self) -> bool {
        // Segments and values are never empty, so the first one decides.
        self.segments
            .first()
            .and_then(|s| self.segment(s))
            .is_some_and(|text| text.starts_with('$'))
    }
}

impl fmt::Debug for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TopicTemplate").field(&&*self.text).finish()
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for TopicTemplate {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TopicTemplate::parse(s)
    }
}

impl TryFrom<&str> for TopicTemplate {
    type Error = TemplateError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        TopicTemplate::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use unigate_pubsub::TopicError;

    use super::*;

    fn subject<'a>(client_id: &'a str, username: Option<&'a str>, cert_cn: Option<&'a str>) -> Subject<'a> {
        Subject {
            client_id,
            username,
            cert_cn,
            listener: "l",
            authenticator: "a",
        }
    }

    fn expand(template: &str, s: &Subject<'_>) -> Option<String> {
        TopicTemplate::parse(template).unwrap().expand(s)
    }

    #[test]
    fn parses_filters_and_placeholders() {
        for ok in [
            "#",
            "a/+/b",
            "$SYS/#",
            "$",
            "a$/b$c",
            "devices/${clientid}/#",
            "u/${username}",
            "c/${cert_cn}/+",
            "dev-${clientid}-x/${username}${cert_cn}",
            "${clientid}",
            "a//${clientid}/",
            "a}/{b",
            "eq a/#",
            "eq +",
            "eq $SYS/x",
        ] {
            let t = TopicTemplate::parse(ok).unwrap();
            assert_eq!(t.as_str(), ok);
            assert_eq!(t.to_string(), ok);
            assert_eq!(ok.parse::<TopicTemplate>(), Ok(t));
        }
        let t = TopicTemplate::parse("x/${username}/${cert_cn}").unwrap();
        assert!(t.uses(Placeholder::Username) && t.uses(Placeholder::CertCn) && !t.uses(Placeholder::ClientId));
        assert!(!t.is_eq());
        assert!(TopicTemplate::parse("eq a").unwrap().is_eq());
        assert_eq!(format!("{t:?}"), "TopicTemplate(\"x/${username}/${cert_cn}\")");
    }

    #[test]
    fn refuses_bad_templates() {
        use TemplateError as E;
        let cases: &[(&str, TemplateError)] = &[
            ("", E::InvalidFilter(TopicError::Empty)),
            ("eq ", E::InvalidFilter(TopicError::Empty)),
            ("a/\0", E::InvalidFilter(TopicError::ContainsNul)),
            ("a/#/b", E::InvalidFilter(TopicError::InvalidWildcard)),
            ("a+", E::InvalidFilter(TopicError::InvalidWildcard)),
            ("+${clientid}", E::InvalidFilter(TopicError::InvalidWildcard)),
            ("${clientid}#", E::InvalidFilter(TopicError::InvalidWildcard)),
            ("eq a/#/b", E::InvalidFilter(TopicError::InvalidWildcard)),
            ("a/${clientid", E::UnterminatedPlaceholder),
            ("a/${clientid/b}", E::UnterminatedPlaceholder),
            ("${", E::UnterminatedPlaceholder),
            ("a/${user}", E::UnknownPlaceholder("user".into())),
            ("${}", E::UnknownPlaceholder(String::new())),
            ("${ClientId}", E::UnknownPlaceholder("ClientId".into())),
            ("$share/g/#", E::SharedFilter),
            ("$share/${clientid}/a", E::SharedFilter),
            ("eq $share/g/a", E::SharedFilter),
            ("$share/g", E::InvalidFilter(TopicError::InvalidShare)),
            ("eq a/${clientid}", E::PlaceholderInEq),
        ];
        for (text, expected) in cases {
            assert_eq!(TopicTemplate::parse(text).as_ref(), Err(expected), "{text:?}");
        }
        let long = format!("a/{}", "${clientid}".repeat(MAX_TOPIC_LEN / 10));
        assert_eq!(TopicTemplate::parse(&long), Err(E::InvalidFilter(TopicError::TooLong)));
        // Messages say what to fix.
        let msg = TopicTemplate::parse("a/${user}").unwrap_err().to_string();
        assert!(msg.contains("${user}") && msg.contains("${username}"), "{msg}");
    }

    #[test]
    fn expands_each_placeholder() {
        let s = subject("c1", Some("alice"), Some("dev.example"));
        assert_eq!(expand("d/${clientid}/#", &s).as_deref(), Some("d/c1/#"));
        assert_eq!(expand("u/${username}/+", &s).as_deref(), Some("u/alice/+"));
        assert_eq!(expand("c/${cert_cn}", &s).as_deref(), Some("c/dev.example"));
        assert_eq!(
            expand("x-${clientid}-${username}${cert_cn}//a", &s).as_deref(),
            Some("x-c1-alicedev.example//a")
        );
        assert_eq!(expand("$SYS/#", &s).as_deref(), Some("$SYS/#"));
        assert_eq!(expand("eq a/+", &s).as_deref(), Some("a/+"));
    }

    #[test]
    fn missing_or_unsafe_values_expand_to_nothing() {
        let t = "u/${username}/#";
        assert_eq!(expand(t, &subject("c", None, None)), None);
        assert_eq!(expand("c/${cert_cn}", &subject("c", Some("u"), None)), None);
        for bad in ["", "a/#", "#", "+", "a/b", "x\0y", "a+b", "/"] {
            assert_eq!(expand(t, &subject("c", Some(bad), None)), None, "{bad:?}");
            assert_eq!(expand("d/${clientid}", &subject(bad, None, None)), None, "{bad:?}");
        }
        // A template not using the bad value is unaffected.
        assert_eq!(
            expand("d/${clientid}", &subject("c", Some("a/#"), None)).as_deref(),
            Some("d/c")
        );
        // `$` is an ordinary character except at the very start of the filter.
        assert_eq!(expand("${clientid}/#", &subject("$SYS", None, None)), None);
        assert_eq!(expand("${clientid}-x/#", &subject("$SYS", None, None)), None);
        assert_eq!(
            expand("d/${clientid}", &subject("$SYS", None, None)).as_deref(),
            Some("d/$SYS")
        );
        assert_eq!(
            expand("x${clientid}", &subject("$SYS", None, None)).as_deref(),
            Some("x$SYS")
        );
        assert_eq!(
            expand("${clientid}/#", &subject("a$", None, None)).as_deref(),
            Some("a$/#")
        );
    }

    #[test]
    fn filled_levels_compare_in_place() {
        let s = subject("c1", Some("al"), Some("al"));
        let b = Bindings::new(&s, PlaceholderSet(0b111));
        let segments = [
            Segment::Var(Placeholder::Username),
            Segment::Literal("-".into()),
            Segment::Var(Placeholder::CertCn),
        ];
        let level = Filled {
            segments: &segments,
            bindings: &b,
        };
        assert!(level.eq_level("al-al"));
        for other in ["al-a", "al-alx", "al", "", "xal-al", "al-al/"] {
            assert!(!level.eq_level(other), "{other:?}");
        }
        assert!(!level.starts_with_dollar());
        let empty = Filled {
            segments: &[],
            bindings: &b,
        };
        assert!(empty.eq_level("") && !empty.eq_level("a"));
    }
}
