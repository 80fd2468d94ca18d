//! `zc-trace serve` as an HTTP server left running on a node: clients that connect and say
//! nothing, trickle a byte every few seconds or send garbage (a TLS hello) hold up no scrape
//! and no exit.
mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One request on a fresh connection: the status line's code, the head and the body.
fn request(port: u16, text: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(text.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
}

/// A client that sends `GET /metrics ...` one byte every 4 s until the server hangs up.
fn trickle(port: u16) -> thread::JoinHandle<()> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    thread::spawn(move || {
        for b in get("/metrics").bytes() {
            if s.write_all(&[b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_secs(4));
        }
    })
}

#[test]
fn slow_and_hostile_clients_hold_up_no_scrape_and_no_exit() {
    if !privileged("slow_and_hostile_clients_hold_up_no_scrape_and_no_exit") {
        return;
    }
    let traced = KillOnDrop(Command::new("sleep").arg("120").spawn().unwrap());
    let port = free_port();
    let mut serve = start_serving(&["-p", &traced.0.id().to_string(), "--listen", &format!("127.0.0.1:{port}")]);

    let _idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The start of a TLS ClientHello, then bytes that are no HTTP.
    garbage.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\xff\xfe\r\n\r\n").unwrap();
    let _trickle = trickle(port);

    // Scrapes over 12 s, across the header timeout (5 s) of the idle and trickling clients.
    let mut slowest = Duration::ZERO;
    for _ in 0..12 {
        let t = Instant::now();
        let (code, head, body) = request(port, &get("/metrics"));
        slowest = slowest.max(t.elapsed());
        assert_eq!(code, 200, "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{head}");
        assert!(body.contains("zc_probe_attached") && body.ends_with("# EOF\n"), "{body}");
        thread::sleep(Duration::from_secs(1));
    }
    assert!(slowest < Duration::from_millis(200), "slowest scrape beside slow clients took {slowest:?}");

    // HEAD: the headers of a scrape, no body.
    let (code, head, body) = request(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((code, body.as_str()), (200, ""), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-length: "), "{head}");
    assert_eq!(request(port, &get("/")).0, 404);
    let (code, head, _) =
        request(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(code, 405, "{head}");
    assert!(head.to_ascii_lowercase().contains("allow: get, head"), "{head}");

    // Two scrapes on one kept-alive connection.
    let mut kept = TcpStream::connect(("127.0.0.1", port)).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for _ in 0..2 {
        kept.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 65536];
        while !String::from_utf8_lossy(&seen).ends_with("# EOF\n") {
            let n = kept.read(&mut buf).unwrap();
            assert!(n > 0, "the kept-alive connection was closed");
            seen.extend_from_slice(&buf[..n]);
        }
    }

    // SIGINT with fresh idle and trickling clients still connected: out within 1 s, status 0.
    let _idle_again = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _trickle_again = trickle(port);
    thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    unsafe { libc::kill(serve.0.id() as i32, libc::SIGINT) };
    let status = loop {
        if let Some(status) = serve.0.try_wait().unwrap() {
            break status;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "serve still running 5 s after SIGINT");
        thread::sleep(Duration::from_millis(10));
    };
    assert!(t.elapsed() < Duration::from_secs(1), "serve took {:?} to exit after SIGINT", t.elapsed());
    assert!(status.success(), "{status}");
}
