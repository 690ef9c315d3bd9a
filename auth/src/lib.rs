//! The auth chain.
