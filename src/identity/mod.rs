//! Identity towards the upstream: the protected header namespace that is stripped from every
//! inbound request, the signed assertion, and the key set apps verify it with. (The plain headers mapped from claims are
//! rendered with the prepared session: `session::prepared`.)

pub mod assertion;
pub mod jwks;
pub mod namespace;

pub use assertion::Signer;
pub use jwks::{Jwks, JwksReply};
pub use namespace::ProtectedNamespace;
