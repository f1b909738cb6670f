//! Identity towards the upstream: the protected header namespace that is stripped from every
//! inbound request, the signed assertion, and the plain headers mapped from claims.

pub mod assertion;
pub mod headers;
pub mod namespace;

pub use assertion::Signer;
pub use headers::{claim_header_value, sanitize};
pub use namespace::ProtectedNamespace;
