//! The limits a client connection is held to while it sends a request head, which Pingora does
//! not bound itself (it reads up to 1 MiB of head, each read with a fresh timeout, so a head
//! dribbled a byte every few seconds is never cut off): a deadline for the whole head, a byte
//! and a line limit, and an idle timeout between requests on a kept-alive connection.
//!
//! `GuardedStream` wraps the connection's stream and watches the bytes Pingora reads: from the
//! start of a head to its end (the empty line) it counts bytes and lines against the limits and
//! runs the deadline; a head over the limits is answered 431, one past the deadline 408, and the
//! connection closed. Once the head is in, the request's own phases run unguarded until the
//! proxy says the request is done (`request_done`, from the logging phase), and the connection
//! is idle: no byte within the idle timeout closes it quietly. The proxy's phases reach the
//! guard of the connection they run on through a task-local, as Pingora serves an HTTP/1
//! connection in one task. HTTP/2 connections are not wrapped (their limits are the h2
//! codec's).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::metrics::metrics;

/// What a connection's heads are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// From the connection's accept (first request) or a head's first byte (later ones) to the
    /// head's empty line.
    pub header_timeout: Duration,
    /// Bytes of a head, request line and empty line included.
    pub max_header_bytes: usize,
    /// Header lines of a head.
    pub max_headers: usize,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
}

tokio::task_local! {
    static GUARD: Arc<ConnectionGuard>;
}

/// Runs `serve` with `guard` as the connection's guard for the proxy's phases.
pub async fn scope<F: std::future::Future>(guard: Arc<ConnectionGuard>, serve: F) -> F::Output {
    GUARD.scope(guard, serve).await
}

/// The proxy has a whole request head: the head limits no longer apply.
pub fn head_received() {
    let _ = GUARD.try_with(|g| g.lock().head_received());
}

/// The proxy is done with a request: the connection is idle until the next head begins.
pub fn request_done() {
    let _ = GUARD.try_with(|g| g.lock().request_done(Instant::now()));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a head since `since`.
    Idle { since: Instant },
    /// Reading a head that began at `started`.
    Head {
        started: Instant,
        bytes: usize,
        lines: usize,
        /// At the start of a line (after its LF), possibly after a CR.
        line_start: bool,
        /// Still before the request line (empty lines there are skipped, RFC 9112 §2.2).
        leading: bool,
    },
    /// The head is in; the request runs until the proxy says it is done.
    Request,
}

/// Why a connection was closed while it sent a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooLarge,
    Timeout,
}

impl Refusal {
    fn response(self) -> &'static [u8] {
        match self {
            Refusal::TooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 26\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nRequest header too large.\n",
            Refusal::Timeout => b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nRequest head too slow.\n",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooLarge => "header_too_large",
            Refusal::Timeout => "header_timeout",
        }
    }
}

/// One connection's head state, shared by its stream and the proxy's phases.
#[derive(Debug)]
pub struct ConnectionGuard {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    limits: HeadLimits,
}

impl ConnectionGuard {
    /// A guard for a connection accepted at `accepted`: its first head is due within the
    /// header timeout from then.
    pub fn new(limits: HeadLimits, accepted: Instant) -> Arc<Self> {
        Arc::new(ConnectionGuard {
            state: Mutex::new(State {
                phase: Phase::Head {
                    started: accepted,
                    bytes: 0,
                    lines: 0,
                    line_start: false,
                    leading: true,
                },
                limits,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; a poisoned lock still holds sound data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the stream should do after bytes were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Refuse(Refusal),
}

impl State {
    fn head_received(&mut self) {
        self.phase = Phase::Request;
    }

    fn request_done(&mut self, now: Instant) {
        self.phase = Phase::Idle { since: now };
    }

    /// The instant a timer must fire at, if any: the head deadline, or the idle deadline.
    fn deadline(&self) -> Option<(Instant, Option<Refusal>)> {
        match self.phase {
            Phase::Idle { since } => Some((since + self.limits.idle_timeout, None)),
            Phase::Head { started, .. } => {
                Some((started + self.limits.header_timeout, Some(Refusal::Timeout)))
            }
            Phase::Request => None,
        }
    }

    /// Accounts `bytes` just read at `now`.
    fn read(&mut self, bytes: &[u8], now: Instant) -> Verdict {
        if let Phase::Idle { .. } = self.phase {
            self.phase = Phase::Head {
                started: now,
                bytes: 0,
                lines: 0,
                line_start: false,
                leading: true,
            };
        }
        let Phase::Head {
            bytes: ref mut count,
            ref mut lines,
            ref mut line_start,
            ref mut leading,
            ..
        } = self.phase
        else {
            return Verdict::Pass;
        };
        let mut rest = bytes;
        if *leading {
            // Blank lines before a request line are skipped (RFC 9112 §2.2) and not counted.
            match rest.iter().position(|&b| b != b'\r' && b != b'\n') {
                Some(start) => {
                    rest = &rest[start..];
                    *leading = false;
                }
                None => return Verdict::Pass,
            }
        }
        // Line by line: a line is blank when nothing but CRs stand between two LFs.
        while !rest.is_empty() {
            let (taken, ended) = match memchr::memchr(b'\n', rest) {
                Some(end) => (end + 1, true),
                None => (rest.len(), false),
            };
            let blank = *line_start
                && rest[..taken - usize::from(ended)]
                    .iter()
                    .all(|&b| b == b'\r');
            *count += taken;
            if ended && blank {
                // The empty line: the head is complete; what follows is the request's. Its
                // final LF is not held against the byte limit.
                if *count - 1 > self.limits.max_header_bytes {
                    return Verdict::Refuse(Refusal::TooLarge);
                }
                self.phase = Phase::Request;
                return Verdict::Pass;
            }
            if ended {
                *lines += 1;
            }
            *line_start = ended || blank;
            if *count > self.limits.max_header_bytes || *lines > self.limits.max_headers + 1 {
                return Verdict::Refuse(Refusal::TooLarge);
            }
            rest = &rest[taken..];
        }
        Verdict::Pass
    }
}

/// A client connection's stream with its guard.
pub struct GuardedStream {
    inner: Stream,
    guard: Arc<ConnectionGuard>,
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
    /// A refusal being written: the response and how much of it is out.
    refusing: Option<(Refusal, usize)>,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl GuardedStream {
    pub fn new(inner: Stream, guard: Arc<ConnectionGuard>) -> Self {
        GuardedStream {
            inner,
            guard,
            timer: None,
            refusing: None,
        }
    }

    /// Writes the refusal out, then fails the read.
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((refusal, written)) = self.refusing else {
            return Poll::Ready(Ok(()));
        };
        let response = refusal.response();
        let mut written = written;
        while written < response.len() {
            match Pin::new(&mut *self.inner).poll_write(cx, &response[written..]) {
                Poll::Ready(Ok(0)) => break,
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(_)) => break,
                Poll::Pending => {
                    self.refusing = Some((refusal, written));
                    return Poll::Pending;
                }
            }
            self.refusing = Some((refusal, written));
        }
        let _ = Pin::new(&mut *self.inner).poll_flush(cx);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            refusal.as_str(),
        )))
    }

    fn refuse(&mut self, refusal: Refusal, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        metrics()
            .connections_refused
            .with_label_values(&[refusal.as_str()])
            .inc();
        tracing::debug!(
            reason = refusal.as_str(),
            "closed a connection whose request head broke the limits"
        );
        self.refusing = Some((refusal, 0));
        self.poll_refuse(cx)
    }

    /// Polls the timer for the current phase's deadline; `Some` when it has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Option<Option<Refusal>> {
        let (at, refusal) = self.guard.lock().deadline()?;
        let timer = match &mut self.timer {
            Some((t, sleep)) if *t == at => sleep,
            _ => {
                self.timer = Some((at, Box::pin(tokio::time::sleep_until(at.into()))));
                &mut self.timer.as_mut().expect("just set").1
            }
        };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Some(refusal),
            Poll::Pending => None,
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.refusing.is_some() {
            return this.poll_refuse(cx);
        }
        let filled = buf.filled().len();
        match Pin::new(&mut *this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[filled..];
                if read.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let verdict = this.guard.lock().read(read, Instant::now());
                match verdict {
                    Verdict::Pass => Poll::Ready(Ok(())),
                    Verdict::Refuse(refusal) => {
                        buf.set_filled(filled);
                        this.refuse(refusal, cx)
                    }
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_deadline(cx) {
                None => Poll::Pending,
                Some(Some(refusal)) => this.refuse(refusal, cx),
                // The idle timeout: close quietly, as an end of stream.
                Some(None) => {
                    metrics()
                        .connections_refused
                        .with_label_values(&["idle_timeout"])
                        .inc();
                    Poll::Ready(Ok(()))
                }
            },
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, socket_digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(socket_digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        header_timeout: Duration::from_secs(10),
        max_header_bytes: 64,
        max_headers: 3,
        idle_timeout: Duration::from_secs(5),
    };

    fn state(at: Instant) -> State {
        State {
            phase: Phase::Head {
                started: at,
                bytes: 0,
                lines: 0,
                line_start: false,
                leading: true,
            },
            limits: LIMITS,
        }
    }

    #[test]
    fn a_head_ends_at_its_empty_line_whatever_the_line_endings() {
        let t = Instant::now();
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nbody bytes that do not count",
        ] {
            let mut s = state(t);
            assert_eq!(s.read(head, t), Verdict::Pass);
            assert_eq!(s.phase, Phase::Request, "{}", String::from_utf8_lossy(head));
        }
        // Byte by byte, across reads.
        let mut s = state(t);
        for b in b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" {
            assert_eq!(s.read(&[*b], t), Verdict::Pass);
        }
        assert_eq!(s.phase, Phase::Request);
    }

    /// The rule the line-by-line scan implements, byte by byte as it was first written.
    fn reference(state: &mut State, bytes: &[u8]) -> Verdict {
        let limits = state.limits;
        let Phase::Head {
            bytes: ref mut count,
            ref mut lines,
            ref mut line_start,
            ref mut leading,
            ..
        } = state.phase
        else {
            return Verdict::Pass;
        };
        for &b in bytes {
            if *leading {
                if b == b'\r' || b == b'\n' {
                    continue;
                }
                *leading = false;
            }
            *count += 1;
            match b {
                b'\n' if *line_start => {
                    state.phase = Phase::Request;
                    return Verdict::Pass;
                }
                b'\n' => {
                    *lines += 1;
                    *line_start = true;
                }
                b'\r' if *line_start => {}
                _ => *line_start = false,
            }
            if *count > limits.max_header_bytes || *lines > limits.max_headers + 1 {
                return Verdict::Refuse(Refusal::TooLarge);
            }
        }
        Verdict::Pass
    }

    proptest::proptest! {
        /// Any bytes of CR, LF and a letter, cut into any reads: the scan decides as the
        /// byte-by-byte rule does, read after read, and passes in the same state.
        #[test]
        fn the_line_scan_decides_as_the_byte_rule(
            bytes in proptest::collection::vec(proptest::sample::select(&b"\r\na:"[..]), 0..120),
            cuts in proptest::collection::vec(0usize..120, 0..6),
        ) {
            let t = Instant::now();
            let (mut fast, mut slow) = (state(t), state(t));
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= bytes.len()).collect();
            cuts.push(0);
            cuts.push(bytes.len());
            cuts.sort();
            for read in cuts.windows(2).map(|w| &bytes[w[0]..w[1]]) {
                if read.is_empty() {
                    continue;
                }
                let (a, b) = (fast.read(read, t), reference(&mut slow, read));
                proptest::prop_assert_eq!(a, b);
                if a != Verdict::Pass {
                    break;
                }
                proptest::prop_assert_eq!(&fast.phase, &slow.phase);
                if fast.phase == Phase::Request {
                    break;
                }
            }
        }
    }

    /// Heads around the byte limit, whole and cut at every point, with either line ending.
    #[test]
    fn the_line_scan_agrees_at_the_byte_limit() {
        let t = Instant::now();
        for len in 55..70 {
            for end in ["\r\n\r\n", "\n\n", "\r\n\r\r\n"] {
                let head = format!("{}{end}", "a".repeat(len));
                for cut in 0..=head.len() {
                    let (mut fast, mut slow) = (state(t), state(t));
                    for read in [&head.as_bytes()[..cut], &head.as_bytes()[cut..]] {
                        let a = fast.read(read, t);
                        assert_eq!(a, reference(&mut slow, read), "{len} {end:?} {cut}");
                        if a != Verdict::Pass {
                            // Refused: the connection is done with, whatever was counted.
                            break;
                        }
                        assert_eq!(fast.phase, slow.phase, "{len} {end:?} {cut}");
                    }
                }
            }
        }
    }

    #[test]
    fn heads_over_the_byte_or_line_limit_are_refused() {
        let t = Instant::now();
        let mut s = state(t);
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(80));
        assert_eq!(
            s.read(long.as_bytes(), t),
            Verdict::Refuse(Refusal::TooLarge)
        );
        let mut s = state(t);
        let many = "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n";
        assert_eq!(
            s.read(many.as_bytes(), t),
            Verdict::Refuse(Refusal::TooLarge)
        );
        // Exactly at the limits passes.
        let mut s = state(t);
        let three = "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert_eq!(s.read(three.as_bytes(), t), Verdict::Pass);
        assert_eq!(s.phase, Phase::Request);
    }

    #[test]
    fn deadlines_follow_the_phase() {
        let t = Instant::now();
        let mut s = state(t);
        assert_eq!(
            s.deadline(),
            Some((t + LIMITS.header_timeout, Some(Refusal::Timeout)))
        );
        s.head_received();
        assert_eq!(
            s.deadline(),
            None,
            "a request in progress has no head deadline"
        );
        let done = t + Duration::from_secs(3);
        s.request_done(done);
        assert_eq!(s.deadline(), Some((done + LIMITS.idle_timeout, None)));
        // The next head's clock starts at its first byte.
        let next = done + Duration::from_secs(1);
        assert_eq!(s.read(b"GE", next), Verdict::Pass);
        assert_eq!(
            s.deadline(),
            Some((next + LIMITS.header_timeout, Some(Refusal::Timeout)))
        );
    }
}
