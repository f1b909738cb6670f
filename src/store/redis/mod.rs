//! The Redis store, in standalone, Sentinel or Cluster mode: the commands here; connections in
//! `link` (and `sentinel`, `connect`, `topology`). Keys follow `KeySchema` (docs/protocol.md):
//! `{prefix}s:{H(id)}` holds the record, `{prefix}u:{sub}` the set of a user's `H(id)`s; key
//! TTLs run to the record's earlier deadline.
//!
//! A session key and its user's set may live in different cluster slots, so no command or
//! script touches both: multi-key operations are ordered single-key steps, arranged so that an
//! interruption leaves at most a stale set member (pruned lazily), never a live session that
//! logout-all cannot find. The one script that remains, compare-and-set, reads and writes a
//! single key.
//!
//! Every call has a deadline: the command timeout, plus the connect timeout for the call that
//! may have to (re)connect.

mod connect;
mod errors;
mod link;
mod sentinel;
mod topology;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use redis::{RedisError, Script};

use super::{ttl_ms, Aux, CasOutcome, KeySchema, SessionStore, StoreError};
use crate::config::model::{RecordFormat, RedisStoreSettings};
use crate::session::{SessionRecord, StoreKey};
pub use connect::{client_for, node_info};
use errors::{is_readonly, map_error};
pub use link::Link;
pub use sentinel::switch_master;
pub use topology::primaries;

/// Pages of keys the active-sessions count reads per primary (and keys asked for per page):
/// about 10,000 keys, exact below that, an estimate above.
const COUNT_SAMPLE_CALLS: usize = 10;
const COUNT_PAGE: usize = 1000;

/// Replace the record only if its stored version is `ARGV[1]`; never recreate a missing key.
/// Returns 1 written, 0 version conflict, -1 missing.
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return -1 end
local record
if ARGV[4] == 'json' then record = cjson.decode(current) else record = cmsgpack.unpack(current) end
if tonumber(record.v) ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

pub struct RedisStore {
    connector: link::Connector,
    settings: RedisStoreSettings,
    keys: KeySchema,
    format: RecordFormat,
    cas: Script,
}

impl RedisStore {
    /// Prepares the store; no connection is made until the first call.
    pub fn new(settings: RedisStoreSettings, format: RecordFormat) -> Result<Self, StoreError> {
        let connector = link::Connector::new(&settings)
            .map_err(|e| StoreError::Command(format!("invalid Redis settings: {e}")))?;
        Ok(RedisStore {
            connector,
            keys: KeySchema::new(&settings.key_prefix),
            settings,
            format,
            cas: Script::new(CAS_SCRIPT),
        })
    }

    fn session_key(&self, key: &StoreKey) -> String {
        self.keys.session(key)
    }

    fn user_key(&self, sub: &str) -> String {
        self.keys.user(sub)
    }

    /// Runs one store operation under its deadline. A `READONLY` reply (the master was demoted
    /// in a failover; nothing was written) is retried once on a freshly resolved master.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Link) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let deadline = self.settings.command_timeout + self.settings.connect_timeout;
        let attempt = async {
            let mut retried = false;
            loop {
                let link = self.connector.link().await?;
                match op(link.clone()).await {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        self.connector.failed(&link, &e);
                        if !retried && is_readonly(&e) {
                            retried = true;
                            continue;
                        }
                        return Err(e);
                    }
                }
            }
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result.map_err(map_error),
            Err(_) => Err(StoreError::Timeout(deadline)),
        }
    }
}

impl RedisStore {
    /// Runs one command under the store's deadline.
    async fn query<T: redis::FromRedisValue + Send>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        self.run(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// The members of a user's set, sorted.
    async fn members(&self, ukey: &str) -> Result<Vec<String>, StoreError> {
        let mut members: Vec<String> = self.query(&redis::Cmd::smembers(ukey)).await?;
        members.sort();
        Ok(members)
    }

    /// One `command` per member's session key.
    fn per_session(
        &self,
        members: &[String],
        command: fn(String) -> redis::Cmd,
    ) -> Vec<redis::Cmd> {
        members
            .iter()
            .map(|m| command(self.session_key(&StoreKey::from_stored(m.clone()))))
            .collect()
    }

    /// Runs single-key commands side by side on the multiplexed connection (one round trip);
    /// in a cluster each goes to the node that owns its key, as no pipeline may cross slots.
    async fn each<T: redis::FromRedisValue + Send>(
        &self,
        cmds: &[redis::Cmd],
    ) -> Result<Vec<T>, StoreError> {
        self.run(|c| {
            futures_util::future::try_join_all(cmds.iter().map(move |cmd| {
                let mut c = c.clone();
                async move { cmd.query_async(&mut c).await }
            }))
        })
        .await
    }
}

fn outcome(code: i64) -> CasOutcome {
    match code {
        1 => CasOutcome::Written,
        0 => CasOutcome::Conflict,
        _ => CasOutcome::Missing,
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, key: &StoreKey, _now: u64) -> Result<Option<SessionRecord>, StoreError> {
        let bytes: Option<Vec<u8>> = self.query(&redis::Cmd::get(self.session_key(key))).await?;
        match bytes {
            Some(b) => Ok(Some(SessionRecord::decode(&b, self.format)?)),
            None => Ok(None),
        }
    }

    async fn create(
        &self,
        key: &StoreKey,
        record: &SessionRecord,
        now: u64,
    ) -> Result<(), StoreError> {
        // The user set first: if the session write then fails, the set holds a stale member
        // (pruned lazily); the other order could leave a session logout-all cannot find.
        // The set lives as long as the longest session it can hold: a new session's absolute
        // deadline is the latest of any of this user's sessions.
        let ukey = self.user_key(&record.sub);
        let mut membership = redis::pipe();
        membership
            .cmd("SADD")
            .arg(&ukey)
            .arg(key.as_str())
            .ignore()
            .cmd("PEXPIRE")
            .arg(&ukey)
            .arg(record.deadlines.absolute.saturating_sub(now).max(1))
            .ignore();
        let membership = &membership;
        self.run(|mut c| async move { membership.query_async::<()>(&mut c).await })
            .await?;

        let mut set = redis::cmd("SET");
        set.arg(self.session_key(key))
            .arg(record.encode(self.format))
            .arg("PX")
            .arg(ttl_ms(record, now))
            .arg("NX");
        let written: Option<String> = self.query(&set).await?;
        match written {
            Some(_) => Ok(()),
            None => Err(StoreError::Exists),
        }
    }

    async fn compare_and_set(
        &self,
        key: &StoreKey,
        expected: u64,
        record: &SessionRecord,
        now: u64,
    ) -> Result<CasOutcome, StoreError> {
        let mut invocation = self.cas.key(self.session_key(key));
        invocation
            .arg(expected)
            .arg(record.encode(self.format))
            .arg(ttl_ms(record, now))
            .arg(self.format.as_str());
        let invocation = &invocation;
        let code: i64 = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(outcome(code))
    }

    async fn destroy(&self, key: &StoreKey, sub: Option<&str>) -> Result<bool, StoreError> {
        // The session first, then its set member: a failure in between leaves a stale member.
        let deleted: i64 = self.query(&redis::Cmd::del(self.session_key(key))).await?;
        if let Some(sub) = sub {
            self.query::<i64>(&redis::Cmd::srem(self.user_key(sub), key.as_str()))
                .await?;
        }
        Ok(deleted > 0)
    }

    async fn destroy_user(&self, sub: &str) -> Result<Vec<StoreKey>, StoreError> {
        // Members, then their sessions, then exactly those members: a session created while
        // this runs keeps its membership (it was created after the logout-all).
        let ukey = self.user_key(sub);
        let members = self.members(&ukey).await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let deleted: Vec<i64> = self
            .each(&self.per_session(&members, redis::Cmd::del))
            .await?;
        self.query::<i64>(&redis::Cmd::srem(&ukey, &members))
            .await?;
        Ok(members
            .into_iter()
            .zip(deleted)
            .filter(|(_, d)| *d > 0)
            .map(|(m, _)| StoreKey::from_stored(m))
            .collect())
    }

    async fn compare_and_set_many(
        &self,
        writes: &[(StoreKey, u64, SessionRecord)],
        now: u64,
    ) -> Result<Vec<CasOutcome>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let invocations: Vec<_> = writes
            .iter()
            .map(|(key, expected, record)| {
                let mut invocation = self.cas.key(self.session_key(key));
                invocation
                    .arg(*expected)
                    .arg(record.encode(self.format))
                    .arg(ttl_ms(record, now))
                    .arg(self.format.as_str());
                invocation
            })
            .collect();
        // Side by side on the multiplexed connection: one round trip for the batch, and each
        // write goes to its key's node in a cluster. A node without the script (a new master
        // after a failover) gets it loaded by the first invocation that misses it.
        let invocations = &invocations;
        let codes: Vec<i64> = self
            .run(|c| {
                futures_util::future::try_join_all(invocations.iter().map(move |invocation| {
                    let mut c = c.clone();
                    async move { invocation.invoke_async(&mut c).await }
                }))
            })
            .await?;
        Ok(codes.into_iter().map(outcome).collect())
    }

    async fn user_sessions(&self, sub: &str, _now: u64) -> Result<Vec<StoreKey>, StoreError> {
        let ukey = self.user_key(sub);
        let members = self.members(&ukey).await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<bool> = self
            .each(&self.per_session(&members, redis::Cmd::exists))
            .await?;
        let (live, stale): (Vec<_>, Vec<_>) = members
            .into_iter()
            .zip(found)
            .partition(|(_, found)| *found);
        if !stale.is_empty() {
            let stale: Vec<String> = stale.into_iter().map(|(m, _)| m).collect();
            self.query::<i64>(&redis::Cmd::srem(&ukey, stale)).await?;
        }
        Ok(live
            .into_iter()
            .map(|(m, _)| StoreKey::from_stored(m))
            .collect())
    }

    /// Counts session keys with `SCAN` on every node that holds them (the master, or each
    /// cluster primary): O(sessions), so only for the background sampler.
    /// Exact while the keyspace of a primary fits in the sample budget; beyond it, the share
    /// of session keys among the keys a bounded scan visited, times the primary's key count.
    /// A full scan of a large keyspace every minute from every instance costed the serving
    /// path measurably (BENCHMARKS.md): this one reads at most `COUNT_SAMPLE_CALLS` pages.
    async fn count(&self, _now: u64) -> Result<u64, StoreError> {
        let prefix = self.keys.session_prefix();
        let count = async {
            let mut total = 0u64;
            for client in primaries(&self.settings, redis::ProtocolVersion::RESP2).await? {
                let mut conn = client.get_multiplexed_async_connection().await?;
                let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await?;
                let (mut seen, mut sessions, mut cursor) = (0u64, 0u64, 0u64);
                let mut complete = false;
                for _ in 0..COUNT_SAMPLE_CALLS {
                    let (next, page): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(COUNT_PAGE)
                        .query_async(&mut conn)
                        .await?;
                    seen += page.len() as u64;
                    sessions += page
                        .iter()
                        .filter(|k| k.starts_with(prefix.as_bytes()))
                        .count() as u64;
                    if next == 0 {
                        complete = true;
                        break;
                    }
                    cursor = next;
                }
                total += if complete || seen == 0 {
                    sessions
                } else {
                    (sessions as f64 / seen as f64 * keys as f64).round() as u64
                };
            }
            Ok::<_, RedisError>(total)
        };
        match tokio::time::timeout(Duration::from_secs(30), count).await {
            Ok(result) => result.map_err(map_error),
            Err(_) => Err(StoreError::Timeout(Duration::from_secs(30))),
        }
    }

    async fn put_aux(
        &self,
        kind: Aux,
        id: &str,
        value: &[u8],
        ttl_ms: u64,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        let mut set = redis::cmd("SET");
        set.arg(self.keys.aux(kind, id))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms.max(1));
        if only_if_absent {
            set.arg("NX");
        }
        let written: Option<String> = self.query(&set).await?;
        Ok(written.is_some())
    }

    async fn get_aux(&self, kind: Aux, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(&redis::Cmd::get(self.keys.aux(kind, id))).await
    }

    async fn take_aux(&self, kind: Aux, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // GETDEL (Redis 6.2): of two callbacks racing with one state, one gets the flow.
        self.query(redis::cmd("GETDEL").arg(self.keys.aux(kind, id)))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }
}
