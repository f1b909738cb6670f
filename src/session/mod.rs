//! The session model, pure: ids and the keys they are stored under, the record and its
//! deadlines, the lifecycle decisions (expire, renew, rotate, merge), the control headers apps
//! answer with, and the prepared form requests use (with the projection of claims onto the
//! mapped identity headers). No I/O and no store: `store` persists records, `cache` keeps
//! prepared sessions, and `sessions` is the service that puts them together.

pub mod control;
pub mod id;
pub mod lifecycle;
pub mod prepared;
pub mod record;

pub use id::{SessionId, StoreKey};
pub use prepared::PreparedSession;
pub use record::{Claims, Deadlines, ProviderLink, SessionRecord};
