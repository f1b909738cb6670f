//! A client cannot hold the proxy's connections or memory: a request head dribbled a byte at
//! a time is cut off at the header deadline (408) while other clients keep being served; heads
//! over the byte or line limit get 431; connections over the global or per-client cap get 503
//! at once; an idle kept-alive connection is closed after the keep-alive timeout.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects to the proxy")
}

/// A connection to the proxy from another loopback address (all of 127/8 is local).
async fn connect_from(source: &str, port: u16) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{source}:0").parse().unwrap())
        .expect("binds a loopback source address");
    socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connects to the proxy")
}

/// Everything the proxy sends until it closes the connection (or `limit` passes).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbled_head_is_cut_off_at_the_deadline_while_others_are_served() {
    let h = Harness::new()
        .server(|s| s.header_timeout("1s"))
        .start()
        .await;
    let mut slow = connect(h.proxy.port).await;
    slow.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let dribble = async {
        // One byte every 100 ms: 200 bytes would take 20 s.
        let started = Instant::now();
        for b in "X-Padding: "
            .bytes()
            .chain(std::iter::repeat(b'a'))
            .take(200)
        {
            if slow.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Stop writing once the proxy has answered (the read side has data).
            let mut peek = [0u8; 1];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), slow.peek(&mut peek)).await
            {
                if n > 0 {
                    break;
                }
            }
        }
        started.elapsed()
    };
    let others = async {
        let mut served = 0;
        for _ in 0..10 {
            let reply = h.request("/public/x", None, &[]).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "a normal client was not served"
            );
            served += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    };
    let (dribbled_for, served) = tokio::join!(dribble, others);
    assert_eq!(served, 10);
    let answer = read_until_closed(&mut slow, Duration::from_secs(10))
        .await
        .expect("the proxy closes the slow connection");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("X-Content-Type-Options: nosniff"),
        "{answer}"
    );
    assert!(
        dribbled_for < Duration::from_secs(20),
        "the dribble ran to its end: the deadline never fired"
    );
    assert_eq!(
        h.upstream().hits(),
        10,
        "the slow request never reached the app"
    );
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("sessiongate_connections_refused_total{reason=\"header_timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_over_the_byte_or_line_limit_get_431() {
    let h = Harness::new()
        .server(|s| s.max_header_bytes(4096).max_headers(20))
        .start()
        .await;
    let big = format!(
        "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(5000)
    );
    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /public/x HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    for request in [big, many] {
        let mut c = connect(h.proxy.port).await;
        let _ = c.write_all(request.as_bytes()).await;
        let answer = read_until_closed(&mut c, Duration::from_secs(10))
            .await
            .expect("the proxy closes the connection");
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        assert!(
            answer.contains("X-Content-Type-Options: nosniff"),
            "{answer}"
        );
    }
    assert_eq!(h.upstream().hits(), 0);
    // A head just within the limits is served.
    let fine: String = (0..17).map(|i| format!("X-H{i}: v\r\n")).collect();
    let reply = h
        .raw(&format!(
            "GET /public/x HTTP/1.1\r\nHost: x\r\n{fine}Connection: close\r\n\r\n"
        ))
        .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_caps_hold() {
    let h = Harness::new()
        .server(|s| s.max_connections(6, Some(4)))
        .start()
        .await;
    // Four idle connections from 127.0.0.1: the per-client cap.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(h.proxy.port).await);
    }
    // Wait until the proxy has accepted them all.
    eventually_async(
        Duration::from_secs(10),
        "the proxy holds four connections",
        || async {
            h.metrics()
                .await
                .contains("sessiongate_client_connections 4")
                .then_some(())
        },
    )
    .await;
    let mut fifth = connect(h.proxy.port).await;
    let answer = read_until_closed(&mut fifth, Duration::from_secs(10))
        .await
        .expect("refused at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("X-Content-Type-Options: nosniff"),
        "{answer}"
    );
    assert!(answer.contains("Too many connections."));
    // A place comes back when a connection closes.
    drop(held.pop());
    let reply = eventually_async(
        Duration::from_secs(10),
        "a freed place is taken",
        || async {
            let reply = h
                .raw("GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            (reply.status == 200).then_some(reply)
        },
    )
    .await;
    assert_eq!(reply.status, 200);
    // Three held from 127.0.0.1; three more from other clients fill the total cap of six.
    for source in ["127.0.0.2", "127.0.0.2", "127.0.0.3"] {
        held.push(connect_from(source, h.proxy.port).await);
    }
    eventually_async(
        Duration::from_secs(10),
        "the proxy holds six connections",
        || async {
            h.metrics()
                .await
                .contains("sessiongate_client_connections 6")
                .then_some(())
        },
    )
    .await;
    let mut seventh = connect_from("127.0.0.4", h.proxy.port).await;
    let answer = read_until_closed(&mut seventh, Duration::from_secs(10))
        .await
        .expect("refused at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let metrics = h.metrics().await;
    // (The freed place may have been asked for again before it was given back: at least one.)
    for reason in ["too_many_from_client", "too_many_connections"] {
        let series = format!("sessiongate_connections_refused_total{{reason=\"{reason}\"}} ");
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(count >= 1, "{reason}: {metrics}");
    }
    // Every place is given back when the clients go.
    drop(held);
    eventually_async(
        Duration::from_secs(10),
        "all places are given back",
        || async {
            h.metrics()
                .await
                .contains("sessiongate_client_connections 0")
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout() {
    let h = Harness::new()
        .server(|s| s.keepalive_timeout("1s"))
        .start()
        .await;
    let mut c = connect(h.proxy.port).await;
    c.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = c.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    // Then nothing: the proxy closes the connection, quietly.
    let rest = read_until_closed(&mut c, Duration::from_secs(10))
        .await
        .expect("the idle connection is closed");
    assert_eq!(rest, "", "closed without an answer");
}
