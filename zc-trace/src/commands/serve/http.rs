//! The HTTP side of `serve`, on hyper: every connection is served by a task of its own, so an
//! idle, slow or hostile client holds up only its own connection, never the folding loop, the
//! signals or another scraper. A scrape asks the loop that owns the kernel maps for a fresh
//! body over a channel and waits for it.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (more are closed as soon as they are
//! accepted), request headers within [`MAX_HEADER_BYTES`] (bodies are never read), the whole
//! header within [`HEADER_TIMEOUT`] (also the keep-alive idle limit), and every write within
//! [`WRITE_TIMEOUT`] (a client that stops reading is dropped).
use std::{convert::Infallible, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc, oneshot},
};
use tokio_io_timeout::TimeoutStream;

pub const MAX_CONNECTIONS: usize = 64;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's smallest read buffer; no scraper sends more than a few hundred bytes of headers.
pub const MAX_HEADER_BYTES: usize = 8192;

/// A scrape waiting for the OpenMetrics text.
pub type Scrape = oneshot::Sender<Bytes>;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Accepts connections until dropped (aborted), each served in its own task.
pub async fn accept(listener: TcpListener, scrapes: mpsc::Sender<Scrape>) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of fds or memory, or a connection reset before it was accepted: a moment
            // later may be better; serving stops for nobody.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else { continue };
        let scrapes = scrapes.clone();
        tokio::spawn(async move {
            connection(stream, scrapes).await;
            drop(permit);
        });
    }
}

async fn connection(stream: TcpStream, scrapes: mpsc::Sender<Scrape>) {
    let _ = stream.set_nodelay(true);
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let service = service_fn(move |request| {
        let scrapes = scrapes.clone();
        async move { Ok::<_, Infallible>(answer(&request, &scrapes).await) }
    });
    // Errors (timeouts, garbage, resets) end this connection and nothing else.
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(Box::pin(stream)), service)
        .await;
}

/// `GET` or `HEAD /metrics`: the OpenMetrics text (hyper leaves the body out for HEAD);
/// other methods 405, other paths 404.
async fn answer(request: &Request<Incoming>, scrapes: &mpsc::Sender<Scrape>) -> Response<Full<Bytes>> {
    match route(request.method(), request.uri().path()) {
        Route::Metrics => {
            let (reply, body) = oneshot::channel();
            if scrapes.send(reply).await.is_err() {
                return plain(StatusCode::SERVICE_UNAVAILABLE);
            }
            match body.await {
                Ok(body) => {
                    let mut response = Response::new(Full::new(body));
                    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(OPENMETRICS));
                    response
                }
                Err(_) => plain(StatusCode::SERVICE_UNAVAILABLE),
            }
        }
        Route::MethodNotAllowed => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
            response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            response
        }
        Route::NotFound => plain(StatusCode::NOT_FOUND),
    }
}

#[derive(Debug, PartialEq)]
enum Route {
    Metrics,
    MethodNotAllowed,
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    match (path, method) {
        ("/metrics", &Method::GET | &Method::HEAD) => Route::Metrics,
        ("/metrics", _) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_of_metrics_are_scrapes() {
        assert_eq!(route(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::HEAD, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::POST, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::GET, "/"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/metrics/x"), Route::NotFound);
    }
}
