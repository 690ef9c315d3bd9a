//! Authorisation: ordered allow/deny rules on publish and subscribe (being written).

/// A compiled ACL (being written).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {}
