//! Placeholder until the password bench lands.
fn main() {}
