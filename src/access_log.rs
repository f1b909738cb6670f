//! The access log: one line per request on stderr, in the shape of the other log lines (the
//! `tracing` text format, or its JSON one with `--log-json`), target `sessiongate::access`.
//!
//! It bypasses the `tracing` formatter, which costs more than the rest of a cached request's
//! session work: each line is written with no allocation into a per-thread buffer, then
//! appended to a shared one that is written out when it holds 32 KiB, and at least every
//! 100 ms by a flusher thread. Once shutdown begins every line is written at once. Whether the
//! line is written at all still follows the log filter (`RUST_LOG=sessiongate::access=off`).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// The log target, for filters.
pub const TARGET: &str = "sessiongate::access";

/// A buffer this full is written out by the request that filled it.
const FLUSH_AT: usize = 32 * 1024;
/// The longest a line waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// What one access line says. Never the cookie or the session id.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    pub timestamp: SystemTime,
    pub request_id: &'a uuid::Uuid,
    /// The client's address (the peer, or behind trusted proxies the rightmost untrusted hop).
    pub client: Option<std::net::IpAddr>,
    pub method: &'a str,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`, and whether over TLS (`https`) or not (`http`).
    pub protocol: &'static str,
    pub scheme: &'static str,
    /// The path without its query (reset tokens and the like travel in queries).
    pub path: &'a str,
    pub status: u16,
    pub route: &'a str,
    pub lookup: &'a str,
    /// The truncated hash of the session id, or `-`.
    pub session: &'a str,
    pub sub: Option<&'a str>,
    pub stripped: usize,
    pub duration: Duration,
    pub error: Option<&'a dyn std::fmt::Display>,
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `2026-11-22T10:00:00.123456Z  INFO sessiongate::access: request request_id=… status=200 …`
    #[default]
    Text,
    /// `{"timestamp":…,"level":"INFO","fields":{"message":"request",…},"target":"sessiongate::access"}`
    Json,
}

/// Escapes `s` as the inside of a JSON string (and of the text format's quoted values, which
/// read the same for everything a request line can hold).
fn escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            let _ = write!(Buf(out), "\\u{:04x}", b);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

thread_local! {
    /// The last whole second written, and its `YYYY-MM-DDTHH:MM:SS` form.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// `2026-11-22T10:00:00.123456Z`; the date and time are formatted once per second per thread.
fn timestamp(out: &mut Vec<u8>, at: SystemTime) {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            let full = humantime::format_rfc3339_seconds(
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            )
            .to_string();
            text.copy_from_slice(&full.as_bytes()[..19]);
            *cached = secs;
        }
        out.extend_from_slice(text.as_slice());
    });
    let mut micros = since.subsec_micros();
    let mut digits = [b'0'; 6];
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.push(b'.');
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// A value known to need no escaping (static names, base64, HTTP tokens), quoted.
fn plain(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escaped(out, s);
    out.push(b'"');
}

fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with microsecond precision: `1.234`.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    number(out, micros / 1000);
    let frac = (micros % 1000) as u16;
    out.push(b'.');
    out.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// `fmt::Write` over a byte buffer.
struct Buf<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Writes `name=value` pairs (text) or `"name":value` members (JSON) into one line.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    json: bool,
}

impl Fields<'_> {
    fn name(&mut self, name: &str) -> &mut Vec<u8> {
        if self.json {
            self.out.extend_from_slice(b",\"");
            self.out.extend_from_slice(name.as_bytes());
            self.out.extend_from_slice(b"\":");
        } else {
            self.out.push(b' ');
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(b'=');
        }
        self.out
    }

    /// A value that needs no escaping: bare in text (as `tracing` writes `%` fields), a
    /// string in JSON.
    fn token(&mut self, name: &str, value: &str) {
        let json = self.json;
        let out = self.name(name);
        if json {
            plain(out, value);
        } else {
            out.extend_from_slice(value.as_bytes());
        }
    }
}

impl Entry<'_> {
    /// Appends the line, newline included.
    pub fn write(&self, format: Format, out: &mut Vec<u8>) {
        let mut id = uuid::Uuid::encode_buffer();
        let request_id = self.request_id.hyphenated().encode_lower(&mut id);
        let error = self.error.map(|e| {
            let mut s = String::new();
            let _ = write!(s, "{e}");
            s
        });
        let error = error.as_deref().unwrap_or("");
        let json = format == Format::Json;
        if json {
            out.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(out, self.timestamp);
            out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\"");
        } else {
            timestamp(out, self.timestamp);
            out.extend_from_slice(b"  INFO ");
            out.extend_from_slice(TARGET.as_bytes());
            out.extend_from_slice(b": request");
        }
        let mut f = Fields { out, json };
        f.token("request_id", request_id);
        let client = f.name("client");
        client.push(b'"');
        match self.client {
            Some(std::net::IpAddr::V4(v4)) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        client.push(b'.');
                    }
                    number(client, octet);
                }
            }
            Some(addr) => {
                let _ = write!(Buf(client), "{addr}");
            }
            None => client.push(b'-'),
        }
        client.push(b'"');
        f.token("method", self.method);
        plain(f.name("protocol"), self.protocol);
        plain(f.name("scheme"), self.scheme);
        quoted(f.name("path"), self.path);
        number(f.name("status"), self.status);
        quoted(f.name("route"), self.route);
        plain(f.name("lookup"), self.lookup);
        plain(f.name("session"), self.session);
        if let Some(sub) = self.sub {
            quoted(f.name("sub"), sub);
        }
        number(f.name("stripped"), self.stripped);
        millis(f.name("duration_ms"), self.duration);
        quoted(f.name("error"), error);
        if json {
            out.extend_from_slice(b"},\"target\":\"");
            out.extend_from_slice(TARGET.as_bytes());
            out.extend_from_slice(b"\"}");
        }
        out.push(b'\n');
    }
}

/// The process's access log: a shared buffer in front of stderr.
pub struct AccessLog {
    format: Format,
    pending: Mutex<Vec<u8>>,
    /// Off once shutdown begins: every line is written at once.
    buffered: AtomicBool,
}

static LOG: OnceLock<AccessLog> = OnceLock::new();

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Sets the line format and starts the flusher thread; the first call wins. Without it, the
/// first line starts the log in the text format.
pub fn init(format: Format) -> &'static AccessLog {
    let mut started = false;
    let log = LOG.get_or_init(|| {
        started = true;
        AccessLog {
            format,
            pending: Mutex::new(Vec::with_capacity(FLUSH_AT * 2)),
            buffered: AtomicBool::new(true),
        }
    });
    if started {
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(|| loop {
                std::thread::sleep(FLUSH_EVERY);
                global().flush();
            });
        if spawned.is_err() {
            // No thread for timed flushes: write every line as it comes.
            log.buffered.store(false, Ordering::Release);
        }
    }
    log
}

/// The process's access log.
pub fn global() -> &'static AccessLog {
    match LOG.get() {
        Some(log) => log,
        None => init(Format::default()),
    }
}

/// Whether the log filter lets access lines through.
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

impl AccessLog {
    /// Logs one request.
    pub fn record(&self, entry: &Entry<'_>) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            entry.write(self.format, line);
            let full = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.extend_from_slice(line);
                (pending.len() >= FLUSH_AT || !self.buffered.load(Ordering::Acquire))
                    .then(|| std::mem::replace(&mut *pending, Vec::with_capacity(FLUSH_AT * 2)))
            };
            if let Some(lines) = full {
                write_out(&lines);
            }
        });
    }

    /// Writes out whatever is buffered.
    pub fn flush(&self) {
        let lines = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.is_empty() {
                return;
            }
            std::mem::replace(&mut *pending, Vec::with_capacity(FLUSH_AT * 2))
        };
        write_out(&lines);
    }

    /// From now on every line is written as it comes (shutdown has begun).
    pub fn unbuffer(&self) {
        self.buffered.store(false, Ordering::Release);
        self.flush();
    }
}

/// One `write_all` under the stderr lock, so other log lines never land inside a line.
fn write_out(lines: &[u8]) {
    // Nowhere to report a failed log write; the next flush tries again with new lines.
    let _ = std::io::stderr().lock().write_all(lines);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn entry<'a>(
        id: &'a uuid::Uuid,
        error: Option<&'a dyn std::fmt::Display>,
        sub: Option<&'a str>,
    ) -> Entry<'a> {
        Entry {
            timestamp: SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456),
            request_id: id,
            client: Some("203.0.113.7".parse().unwrap()),
            method: "GET",
            protocol: "HTTP/2",
            scheme: "https",
            path: "/a\"b\\c",
            status: 200,
            route: "/",
            lookup: "cache_hit",
            session: "abcdefghijkl",
            sub,
            stripped: 2,
            duration: Duration::from_micros(12_345),
            error,
        }
    }

    #[test]
    fn json_lines_are_json_with_every_field() {
        let id = uuid::Uuid::new_v4();
        let error = "bad\nthing \u{1} \"quoted\"";
        let mut out = Vec::new();
        entry(&id, Some(&error), Some("zoë")).write(Format::Json, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["target"], TARGET);
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["timestamp"], "2026-11-18T11:06:40.123456Z");
        let f = &v["fields"];
        assert_eq!(f["message"], "request");
        assert_eq!(f["request_id"], id.to_string());
        assert_eq!(f["client"], "203.0.113.7");
        assert_eq!(f["method"], "GET");
        assert_eq!(f["protocol"], "HTTP/2");
        assert_eq!(f["scheme"], "https");
        assert_eq!(f["path"], "/a\"b\\c");
        assert_eq!(f["status"], 200);
        assert_eq!(f["route"], "/");
        assert_eq!(f["lookup"], "cache_hit");
        assert_eq!(f["session"], "abcdefghijkl");
        assert_eq!(f["sub"], "zoë");
        assert_eq!(f["stripped"], 2);
        assert_eq!(f["duration_ms"].as_f64(), Some(12.345));
        assert_eq!(f["error"], error);

        let mut out = Vec::new();
        entry(&id, None, None).write(Format::Json, &mut out);
        let v: Value = serde_json::from_slice(&out).expect("JSON");
        assert!(v["fields"].get("sub").is_none());
        assert_eq!(v["fields"]["error"], "");
    }

    #[test]
    fn text_lines_read_like_the_other_log_lines() {
        let id = uuid::Uuid::new_v4();
        let mut out = Vec::new();
        entry(&id, None, None).write(Format::Text, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            format!(
                "2026-11-18T11:06:40.123456Z  INFO sessiongate::access: request request_id={id} \
                 client=\"203.0.113.7\" method=GET protocol=\"HTTP/2\" scheme=\"https\" path=\"/a\\\"b\\\\c\" status=200 route=\"/\" lookup=\"cache_hit\" \
                 session=\"abcdefghijkl\" stripped=2 duration_ms=12.345 error=\"\"\n"
            )
        );
        let mut out = Vec::new();
        let error = "line\nbreak";
        entry(&id, Some(&error), Some("alice")).write(Format::Text, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains(" sub=\"alice\" "), "{line}");
        assert!(line.ends_with(" error=\"line\\nbreak\"\n"), "{line}");
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn timestamps_follow_the_clock_across_seconds() {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        for (offset_micros, text) in [
            (7, "2026-11-18T11:06:40.000007Z"),
            (999_999, "2026-11-18T11:06:40.999999Z"),
            (1_000_000, "2026-11-18T11:06:41.000000Z"),
            (86_400_000_000, "2026-11-19T11:06:40.000000Z"),
            (5, "2026-11-18T11:06:40.000005Z"),
        ] {
            let mut out = Vec::new();
            timestamp(&mut out, base + Duration::from_micros(offset_micros));
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    #[test]
    fn durations_keep_three_decimals() {
        for (micros, text) in [
            (0, "0.000"),
            (7, "0.007"),
            (1_050, "1.050"),
            (987_654_321, "987654.321"),
        ] {
            let mut out = Vec::new();
            millis(&mut out, Duration::from_micros(micros));
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }
}
