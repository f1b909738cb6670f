//! The Redis store (standalone). Keys follow DESIGN.md: `{prefix}s:{H(id)}` holds the record,
//! `{prefix}u:{sub}` the set of a user's `H(id)`s; key TTLs run to the record's earlier deadline.
//!
//! One multiplexed connection (redis-rs `ConnectionManager`, reconnecting by itself) is created
//! lazily on first use, inside the runtime that serves requests, so its driver task lives where
//! the work is. Every call has a deadline: the command timeout, plus the connect timeout for the
//! call that may have to (re)connect.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};

use super::id::StoreKey;
use super::record::SessionRecord;
use super::store::{ttl_ms, CasOutcome, SessionStore, StoreError};
use crate::config::model::{RecordFormat, RedisStoreSettings};

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

/// Delete every session listed in the user's set, then the set. Returns the members whose
/// session existed.
const DESTROY_USER_SCRIPT: &str = r"
local members = redis.call('SMEMBERS', KEYS[1])
local removed = {}
for _, member in ipairs(members) do
  if redis.call('DEL', ARGV[1] .. member) == 1 then table.insert(removed, member) end
end
redis.call('DEL', KEYS[1])
return removed
";

pub struct RedisStore {
    client: Client,
    settings: RedisStoreSettings,
    format: RecordFormat,
    connection: OnceLock<ConnectionManager>,
    cas: Script,
    destroy_user: Script,
}

/// How to reach Redis: the URL, with the credentials from `username` / `password_file` /
/// `password_env` applied (they override any in the URL), speaking `protocol`.
pub fn connection_info(
    settings: &RedisStoreSettings,
    protocol: redis::ProtocolVersion,
) -> redis::RedisResult<redis::ConnectionInfo> {
    let info = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())?;
    let mut redis_settings = info.redis_settings().clone().set_protocol(protocol);
    if let Some(username) = &settings.username {
        redis_settings = redis_settings.set_username(username);
    }
    if let Some(password) = &settings.password {
        redis_settings = redis_settings.set_password(String::from_utf8_lossy(&password.0));
    }
    Ok(info.set_redis_settings(redis_settings))
}

impl RedisStore {
    /// Prepares the store; no connection is made until the first call.
    pub fn new(settings: RedisStoreSettings, format: RecordFormat) -> Result<Self, StoreError> {
        let client = connection_info(&settings, redis::ProtocolVersion::RESP2)
            .and_then(Client::open)
            .map_err(|e| StoreError::Command(format!("invalid Redis URL: {e}")))?;
        Ok(RedisStore {
            client,
            settings,
            format,
            connection: OnceLock::new(),
            cas: Script::new(CAS_SCRIPT),
            destroy_user: Script::new(DESTROY_USER_SCRIPT),
        })
    }

    fn session_key(&self, key: &StoreKey) -> String {
        format!("{}s:{}", self.settings.key_prefix, key.as_str())
    }

    fn user_key(&self, sub: &str) -> String {
        format!("{}u:{}", self.settings.key_prefix, sub)
    }

    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(c) = self.connection.get() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.connect_timeout))
            .set_response_timeout(Some(self.settings.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(map_error)?;
        // Two first calls may race here; the loser's lazy manager never connected and is dropped.
        Ok(self.connection.get_or_init(|| manager).clone())
    }

    /// Runs one store operation under its deadline.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let deadline = self.settings.command_timeout + self.settings.connect_timeout;
        let conn = self.connection()?;
        match tokio::time::timeout(deadline, op(conn)).await {
            Ok(result) => result.map_err(map_error),
            Err(_) => Err(StoreError::Timeout(deadline)),
        }
    }
}

fn map_error(e: RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout(Duration::ZERO)
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Command(e.to_string())
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, key: &StoreKey, _now: u64) -> Result<Option<SessionRecord>, StoreError> {
        let skey = self.session_key(key);
        let bytes: Option<Vec<u8>> = self
            .run(|mut c| async move { redis::cmd("GET").arg(&skey).query_async(&mut c).await })
            .await?;
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
        let skey = self.session_key(key);
        let ukey = self.user_key(&record.sub);
        let value = record.encode(self.format);
        let ttl = ttl_ms(record, now);
        // The user set lives as long as the longest session it can hold: a new session's
        // absolute deadline is the latest of any of this user's sessions.
        let set_ttl = record.absolute_deadline.saturating_sub(now).max(1);
        let member = key.as_str().to_string();
        let (set,): (Option<String>,) = self
            .run(|mut c| async move {
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&skey)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl)
                    .arg("NX")
                    .cmd("SADD")
                    .arg(&ukey)
                    .arg(member)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&ukey)
                    .arg(set_ttl)
                    .ignore()
                    .query_async(&mut c)
                    .await
            })
            .await?;
        match set {
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
        let skey = self.session_key(key);
        let value = record.encode(self.format);
        let ttl = ttl_ms(record, now);
        let format = self.format.as_str();
        let script = &self.cas;
        let outcome: i64 = self
            .run(|mut c| async move {
                script
                    .key(&skey)
                    .arg(expected)
                    .arg(value)
                    .arg(ttl)
                    .arg(format)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(match outcome {
            1 => CasOutcome::Written,
            0 => CasOutcome::Conflict,
            _ => CasOutcome::Missing,
        })
    }

    async fn destroy(&self, key: &StoreKey, sub: Option<&str>) -> Result<bool, StoreError> {
        let skey = self.session_key(key);
        let ukey = sub.map(|s| self.user_key(s));
        let member = key.as_str().to_string();
        let (deleted,): (i64,) = self
            .run(|mut c| async move {
                let mut pipe = redis::pipe();
                pipe.atomic().cmd("DEL").arg(&skey);
                if let Some(ukey) = &ukey {
                    pipe.cmd("SREM").arg(ukey).arg(member).ignore();
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        Ok(deleted > 0)
    }

    async fn destroy_user(&self, sub: &str) -> Result<Vec<StoreKey>, StoreError> {
        let ukey = self.user_key(sub);
        let prefix = format!("{}s:", self.settings.key_prefix);
        let script = &self.destroy_user;
        let mut removed: Vec<String> = self
            .run(|mut c| async move { script.key(&ukey).arg(prefix).invoke_async(&mut c).await })
            .await?;
        removed.sort();
        Ok(removed.into_iter().map(StoreKey::from_stored).collect())
    }

    async fn compare_and_set_many(
        &self,
        writes: &[(StoreKey, u64, SessionRecord)],
        now: u64,
    ) -> Result<Vec<CasOutcome>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (key, expected, record) in writes {
            pipe.invoke_script(
                self.cas
                    .key(self.session_key(key))
                    .arg(*expected)
                    .arg(record.encode(self.format))
                    .arg(ttl_ms(record, now))
                    .arg(self.format.as_str()),
            );
        }
        let script = &self.cas;
        let outcomes: Vec<i64> = self
            .run(|mut c| async move {
                match pipe.query_async(&mut c).await {
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        script.prepare_invoke().load_async(&mut c).await?;
                        pipe.query_async(&mut c).await
                    }
                    other => other,
                }
            })
            .await?;
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                1 => CasOutcome::Written,
                0 => CasOutcome::Conflict,
                _ => CasOutcome::Missing,
            })
            .collect())
    }

    async fn user_sessions(&self, sub: &str, _now: u64) -> Result<Vec<StoreKey>, StoreError> {
        let ukey = self.user_key(sub);
        let mut members: Vec<String> = self
            .run(|mut c| {
                let ukey = ukey.clone();
                async move { redis::cmd("SMEMBERS").arg(&ukey).query_async(&mut c).await }
            })
            .await?;
        members.sort();
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = members
            .iter()
            .map(|m| self.session_key(&StoreKey::from_stored(m.clone())))
            .collect();
        let exists: Vec<bool> = self
            .run(|mut c| async move {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("EXISTS").arg(k);
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        let (live, stale): (Vec<_>, Vec<_>) = members
            .into_iter()
            .zip(exists)
            .partition(|(_, exists)| *exists);
        if !stale.is_empty() {
            let stale: Vec<String> = stale.into_iter().map(|(m, _)| m).collect();
            self.run(|mut c| async move {
                redis::cmd("SREM")
                    .arg(&ukey)
                    .arg(stale)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await?;
        }
        Ok(live
            .into_iter()
            .map(|(m, _)| StoreKey::from_stored(m))
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }
}
