//! Session preloader of the load harness: creates N sessions in Redis exactly as sessiongate
//! stores them, and writes their cookie values (one per line) for the load generator.
//!
//! Each session gets a fresh id from `SessionId::generate`, a record from the library's own
//! `new_record`, encoded by `SessionRecord::encode` (MessagePack), under the key
//! `{prefix}s:{H(id)}` with a PX TTL to the earlier deadline, and its `H(id)` added to the
//! user set `{prefix}u:{sub}`; the writes go in pipelines of a few thousand commands.
//!
//! `benches/load/run.sh` runs it as
//! `load_preload --redis URL --prefix sg: --sessions N --cookies FILE --cookie-key-file KEY
//! [--renewal-due]`.
//! Without `--redis` and `--cookies` it exits at once with success, because
//! `cargo test --benches` runs every bench binary with no arguments.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;
use sessiongate::config::model::RecordFormat;
use sessiongate::session::lifecycle::{new_record, now_ms};
use sessiongate::session::record::Claims;
use sessiongate::session::SessionId;
use sessiongate::store::ttl_ms;

/// sessiongate's defaults, which the harness's configuration keeps.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// With `--renewal-due`, sessions look last seen this long ago: 14 minutes of idle time remain,
/// under the default renewal threshold of 15, so the first request of each one queues a
/// renewal (and the key outlives a 10-minute run even if nothing renews it).
const RENEWAL_DUE_AGE: Duration = Duration::from_secs(16 * 60);
/// Sessions per pipeline (three commands each).
const BATCH: usize = 4096;

struct Options {
    redis: String,
    prefix: String,
    sessions: usize,
    cookies: String,
    renewal_due: bool,
    claims_bytes: usize,
    /// The cookie key sessiongate is configured with: the cookies written are signed with it.
    cookie_key: Vec<u8>,
}

fn options() -> Result<Option<Options>, String> {
    let mut redis = None;
    let mut cookies = None;
    let mut prefix = "sg:".to_string();
    let mut sessions = 1usize;
    let mut renewal_due = false;
    let mut claims_bytes = 200usize;
    let mut cookie_key_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number =
            |name: &str, v: String| v.parse::<usize>().map_err(|e| format!("{name} {v}: {e}"));
        match arg.as_str() {
            "--redis" => redis = Some(value("--redis")?),
            "--cookies" => cookies = Some(value("--cookies")?),
            "--prefix" => prefix = value("--prefix")?,
            "--sessions" => sessions = number("--sessions", value("--sessions")?)?,
            "--claims-bytes" => claims_bytes = number("--claims-bytes", value("--claims-bytes")?)?,
            "--renewal-due" => renewal_due = true,
            "--cookie-key-file" => cookie_key_file = Some(value("--cookie-key-file")?),
            // `cargo bench` passes `--bench`; nothing else is meant for this tool.
            _ => {}
        }
    }
    let read_key = |path: &str| -> Result<Vec<u8>, String> {
        let mut key = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            key.pop();
        }
        Ok(key)
    };
    Ok(match (redis, cookies) {
        (Some(redis), Some(cookies)) => {
            Some(Options {
                cookie_key: read_key(cookie_key_file.as_deref().ok_or(
                    "--cookie-key-file is needed (the key sessiongate signs cookies with)",
                )?)?,
                redis,
                prefix,
                sessions,
                cookies,
                renewal_due,
                claims_bytes,
            })
        }
        _ => None,
    })
}

/// Claims whose JSON form is `bytes` long (at least the fixed part, about 110 bytes): what a
/// typical app puts in a session at login.
fn claims(n: usize, bytes: usize) -> Claims {
    let mut claims = json!({
        "email": format!("user{n}@example.com"),
        "name": format!("Load Test User {n}"),
        "roles": ["member", "reader"],
        "tenant": "acme-corporation",
        "pad": "",
    });
    let len = serde_json::to_vec(&claims).map_or(0, |v| v.len());
    claims["pad"] = json!("x".repeat(bytes.saturating_sub(len)));
    match claims {
        serde_json::Value::Object(map) => map,
        _ => Claims::new(),
    }
}

fn preload(o: &Options) -> Result<(), String> {
    let client = redis::Client::open(o.redis.as_str()).map_err(|e| format!("{}: {e}", o.redis))?;
    let mut redis = client
        .get_connection()
        .map_err(|e| format!("connecting to {}: {e}", o.redis))?;
    let file = File::create(&o.cookies).map_err(|e| format!("{}: {e}", o.cookies))?;
    let mut cookies = BufWriter::new(file);
    let codec = sessiongate::cookie::CookieCodec::new(&[&o.cookie_key]);
    let now = now_ms();
    let born = if o.renewal_due {
        now - RENEWAL_DUE_AGE.as_millis() as u64
    } else {
        now
    };
    let started = Instant::now();
    let mut written = 0;
    while written < o.sessions {
        let mut pipe = redis::pipe();
        let end = (written + BATCH).min(o.sessions);
        for n in written..end {
            let id = SessionId::generate().map_err(|e| format!("OS random source: {e}"))?;
            let key = id.store_key();
            let sub = format!("load-{}-{n}", o.sessions);
            let record = new_record(
                sub.clone(),
                claims(n, o.claims_bytes),
                born,
                IDLE_TIMEOUT,
                ABSOLUTE_TIMEOUT,
            );
            let user_key = format!("{}u:{sub}", o.prefix);
            pipe.cmd("SET")
                .arg(sessiongate::store::KeySchema::new(&o.prefix).session(&key))
                .arg(record.encode(RecordFormat::MessagePack))
                .arg("PX")
                .arg(ttl_ms(&record, now))
                .ignore()
                .cmd("SADD")
                .arg(&user_key)
                .arg(key.as_str())
                .ignore()
                .cmd("PEXPIRE")
                .arg(&user_key)
                .arg(record.deadlines.absolute.saturating_sub(now).max(1))
                .ignore();
            writeln!(cookies, "{}", codec.encode(&id))
                .map_err(|e| format!("{}: {e}", o.cookies))?;
        }
        pipe.query::<()>(&mut redis)
            .map_err(|e| format!("writing sessions: {e}"))?;
        written = end;
    }
    cookies.flush().map_err(|e| format!("{}: {e}", o.cookies))?;
    eprintln!(
        "load_preload: {} sessions{} in {:.1} s -> {}",
        o.sessions,
        if o.renewal_due { " (renewal due)" } else { "" },
        started.elapsed().as_secs_f64(),
        o.cookies
    );
    Ok(())
}

fn main() -> ExitCode {
    match options() {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(o)) => match preload(&o) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("load_preload: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("load_preload: {e}");
            ExitCode::from(2)
        }
    }
}
