//! Identity towards the upstream: the protected header namespace that is stripped from every
//! inbound request, and the signed assertion. (The plain headers mapped from claims are
//! rendered with the prepared session: `session::prepared`.)

pub mod assertion;
pub mod namespace;

pub use assertion::Signer;
pub use namespace::ProtectedNamespace;
