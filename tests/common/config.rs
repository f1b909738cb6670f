//! The constants of the test configurations (see `harness`): the signing key the upstream
//! verifies assertions with, the session cookie's name and the key of its MAC, and the cookie
//! codec a test reads and forges cookie values with.

use sessiongate::cookie::CookieCodec;
use sessiongate::session::SessionId;

pub const KEY: &str = "test-signing-key-0123456789abcdefghijklmnop";
pub const COOKIE: &str = "__Host-sid";
/// The key the test proxies sign session cookies with.
pub const COOKIE_KEY: &str = "test-cookie-key-0123456789abcdefghijklmno";

/// The codec of the test proxies' session cookies.
pub fn codec() -> CookieCodec {
    CookieCodec::new(&[COOKIE_KEY])
}

/// The session id a cookie value from a test proxy carries.
pub fn session_id(cookie: &str) -> SessionId {
    codec()
        .decode(cookie.as_bytes())
        .unwrap_or_else(|| panic!("a cookie value signed by the test proxy: {cookie}"))
}

/// A cookie value the test proxy would accept for `id` (for sessions it never issued).
pub fn signed(id: &SessionId) -> String {
    codec().encode(id)
}
