//! Client connections before any request is read: how many the proxy holds (`admission`), and
//! the limits a connection is held to while it sends a request head (`guard`).

pub mod admission;
pub mod guard;

pub use admission::{Admission, Refused, Ticket};
pub use guard::{ConnectionGuard, GuardedStream, HeadLimits};
