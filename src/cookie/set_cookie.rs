//! Writes the `Set-Cookie` values that issue and clear the session cookie, with the attributes
//! docs/protocol.md fixes: `HttpOnly`, `Path=/`, `Secure` and `SameSite` from config, and `Max-Age`
//! only for persistent cookies.

use std::time::Duration;

use cookie::{Cookie, SameSite as CookieSameSite};

use super::CookieCodec;
use crate::config::model::{CookieSettings, SameSite};
use crate::session::SessionId;

/// Formats Set-Cookie values for one cookie configuration, and reads the values back.
#[derive(Debug, Clone)]
pub struct CookieWriter {
    settings: CookieSettings,
    codec: CookieCodec,
}

impl CookieWriter {
    pub fn new(settings: CookieSettings, codec: CookieCodec) -> Self {
        CookieWriter { settings, codec }
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The codec that signs and verifies the cookie's value.
    pub fn codec(&self) -> &CookieCodec {
        &self.codec
    }

    fn base(&self, value: String) -> cookie::CookieBuilder<'static> {
        let same_site = match self.settings.same_site {
            SameSite::Strict => CookieSameSite::Strict,
            SameSite::Lax => CookieSameSite::Lax,
            SameSite::None => CookieSameSite::None,
        };
        let mut b = Cookie::build((self.settings.name.clone(), value))
            .path("/")
            .http_only(true)
            .secure(self.settings.secure)
            .same_site(same_site);
        if let Some(domain) = &self.settings.domain {
            b = b.domain(domain.clone());
        }
        b
    }

    /// Issues `id`. `lifetime` is the time to the absolute deadline, used as `Max-Age` when
    /// the cookie is persistent; otherwise the cookie ends with the browser session.
    pub fn issue(&self, id: &SessionId, lifetime: Duration) -> String {
        let mut b = self.base(self.codec.encode(id));
        if self.settings.persistent {
            let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
            b = b.max_age(cookie::time::Duration::seconds(secs));
        }
        b.build().to_string()
    }

    /// Tells the browser to drop the cookie.
    pub fn clear(&self) -> String {
        self.base(String::new())
            .max_age(cookie::time::Duration::ZERO)
            .expires(cookie::time::OffsetDateTime::UNIX_EPOCH)
            .build()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(persistent: bool) -> CookieSettings {
        CookieSettings {
            name: "__Host-sid".into(),
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            persistent,
        }
    }

    fn writer(persistent: bool) -> CookieWriter {
        CookieWriter::new(
            settings(persistent),
            CookieCodec::new(&[b"cookie-key-0123456789abcdefghijklmnop"]),
        )
    }

    #[test]
    fn session_cookie_has_the_contract_attributes() {
        let id = SessionId::generate().unwrap();
        let w = writer(false);
        let c = w.issue(&id, Duration::from_secs(3600));
        assert!(c.starts_with(&format!("__Host-sid={}", w.codec().encode(&id))));
        for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
            assert!(c.contains(attr), "{c} lacks {attr}");
        }
        assert!(!c.contains("Max-Age"), "{c}");
        assert!(!c.contains("Domain"), "{c}");
    }

    #[test]
    fn persistent_cookie_lives_until_the_absolute_deadline() {
        let id = SessionId::generate().unwrap();
        let c = writer(true).issue(&id, Duration::from_secs(43200));
        assert!(c.contains("Max-Age=43200"), "{c}");
    }

    #[test]
    fn clearing_expires_the_cookie() {
        let c = writer(false).clear();
        assert!(c.starts_with("__Host-sid=;"), "{c}");
        assert!(c.contains("Max-Age=0"), "{c}");
        assert!(c.contains("Path=/"), "{c}");
    }
}
