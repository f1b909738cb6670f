//! The constants of the test configurations (see `harness`): the signing key the upstream
//! verifies assertions with and the session cookie's name.

pub const KEY: &str = "test-signing-key-0123456789abcdefghijklmnop";
pub const COOKIE: &str = "__Host-sid";
