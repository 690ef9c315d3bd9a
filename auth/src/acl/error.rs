//! What can be wrong with an ACL configuration.
//!
//! Both enums are configuration errors: the operator wrote them, and the server refuses to start
//! (or a token's `acl` claim is refused) rather than run with a rule that means something other
//! than what was written. Nothing at check time can fail: a request either matches a rule or not.

use unigate_pubsub::TopicError;

/// Why a text is not a [`TopicTemplate`](super::TopicTemplate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `${` with no `}` after it in the same level.
    #[error("'${{' without a closing '}}' in the same level")]
    UnterminatedPlaceholder,
    /// `${name}` where `name` is not `clientid`, `username` or `cert_cn`.
    #[error("unknown placeholder ${{{0}}}: expected ${{clientid}}, ${{username}} or ${{cert_cn}}")]
    UnknownPlaceholder(String),
    /// Not a valid topic filter (with each placeholder standing for one plain level's worth of
    /// text): empty, too long, a NUL, or a misplaced wildcard (`a/#/b`, `a+`, `${clientid}#`).
    #[error(transparent)]
    InvalidFilter(#[from] TopicError),
    /// A `$share/{group}/...` filter. Rules see the filter part of a shared subscription only, so
    /// a rule naming a share group would silently never do what it says.
    #[error(
        "a rule cannot name a shared subscription ($share/...): rules are checked against the \
         filter part of shared subscriptions"
    )]
    SharedFilter,
    /// A placeholder in an `eq ` template, whose text is compared literally and never expanded.
    #[error("'eq ' templates are literal: placeholders are not expanded in them")]
    PlaceholderInEq,
}

/// Why an [`AclConfig`](super::AclConfig) does not compile into an [`Acl`](super::Acl).
///
/// Rule and topic indexes count from 0, in the order of the configuration (the same index as
/// [`Verdict::rule`](super::Verdict::rule)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// A topic of a rule is not a valid template.
    #[error("acl.rules[{rule}].topics[{topic}]: bad topic template {template:?}: {reason}")]
    Template {
        /// The index of the rule.
        rule: usize,
        /// The index of the template within the rule's `topics`.
        topic: usize,
        /// The template text as configured.
        template: String,
        /// What is wrong with it.
        reason: TemplateError,
    },
    /// A rule with an empty `topics` list, which could never match (most likely a mistake).
    #[error("acl.rules[{rule}]: `topics` is empty, so the rule could never match")]
    NoTopics {
        /// The index of the rule.
        rule: usize,
    },
    /// A rule whose `who` is an empty list ("any of nobody"), which could never match.
    #[error("acl.rules[{rule}]: `who` is an empty list, so the rule could never match")]
    EmptyWho {
        /// The index of the rule.
        rule: usize,
    },
}
