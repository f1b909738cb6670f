//! The session cookie: its signed value, finding it among the request's cookies (and taking it
//! out of what goes upstream), and writing the Set-Cookie that issues or clears it.

mod codec;
mod parse;
mod set_cookie;

pub use codec::{CookieCodec, VALUE_LEN};
pub use parse::{scan, CookieScan, SessionCookie};
pub use set_cookie::CookieWriter;
