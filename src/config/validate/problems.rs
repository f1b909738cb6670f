//! The problem list every table's checks add to, and the value readers several tables share.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::config::problem::ConfigProblem;

#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<ConfigProblem>);

impl Problems {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }
}

pub(super) fn parse_addr(value: &str, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    match value.to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => Some(addr),
            None => {
                p.add(path, format!("\"{value}\" resolves to no address"));
                None
            }
        },
        Err(e) => {
            p.add(
                path,
                format!("\"{value}\" is not a host:port address ({e}); e.g. \"127.0.0.1:8080\""),
            );
            None
        }
    }
}

pub(super) fn positive(
    d: Option<Duration>,
    default: Duration,
    path: &str,
    p: &mut Problems,
) -> Duration {
    let d = d.unwrap_or(default);
    if d.is_zero() {
        p.add(path, "must be greater than zero");
    }
    d
}
