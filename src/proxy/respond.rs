//! Responses the proxy writes itself (no upstream involved): refusals, redirects to login, and
//! store outages. All carry `Cache-Control: no-store`.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// A response decided by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: &'static str,
}

impl LocalResponse {
    pub fn text(status: u16, body: &'static str) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }

    pub fn json(status: u16, body: &'static str) -> Self {
        LocalResponse {
            content_type: "application/json",
            ..Self::text(status, body)
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Writes the whole response to the client.
    pub async fn send(self, session: &mut Session) -> Result<()> {
        let mut header = ResponseHeader::build(self.status, Some(self.headers.len() + 3))?;
        header.insert_header("content-type", self.content_type)?;
        header.insert_header("content-length", self.body.len().to_string())?;
        header.insert_header("cache-control", "no-store")?;
        for (name, value) in self.headers {
            header.append_header(name, value)?;
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(header), head_only)
            .await?;
        if !head_only {
            session
                .write_response_body(Some(Bytes::from_static(self.body.as_bytes())), true)
                .await?;
        }
        Ok(())
    }
}
