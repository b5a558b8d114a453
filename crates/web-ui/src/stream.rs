//! Streamed answers: JSON lines (`application/x-ndjson`), one event a line, read by the page with `fetch` as they
//! come.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};
use tokio::sync::mpsc;

/// The sending end: each value becomes one line. Sending after the page went away is a no-op.
#[derive(Debug, Clone)]
pub(crate) struct Lines(mpsc::UnboundedSender<serde_json::Value>);

impl Lines {
    /// Sends one event.
    pub(crate) fn send(&self, v: serde_json::Value) {
        let _ = self.0.send(v);
    }
}

/// A channel and the streamed response that carries what is sent into it until every sender is dropped.
pub(crate) fn channel() -> (Lines, Response) {
    let (tx, rx) = mpsc::unbounded_channel::<serde_json::Value>();
    let body = futures::StreamExt::map(tokio_stream::wrappers::UnboundedReceiverStream::new(rx), |v| {
        let mut line = v.to_string();
        line.push('\n');
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line))
    });
    let mut r = Response::new(Body::from_stream(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies and the like must not hold the stream back.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    (Lines(tx), r)
}
