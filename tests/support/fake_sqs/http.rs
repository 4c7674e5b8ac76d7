//! A minimal HTTP/1.1 server for the SDK's requests (keep-alive, `Content-Length` bodies), written
//! on tokio directly so a fault can do what no framework lets a handler do: reset the connection
//! without an answer, or close it after a hang. A client that goes away mid-call (an abandoned long
//! poll) cancels the call's wait, as SQS's own front end does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::api::{self, Reply, Shared};

/// Larger bodies are refused (SQS's own limit is 256 KiB of message data per call).
const MAX_BODY: usize = 4 * 1024 * 1024;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(connection(stream, shared.clone()));
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// The parts of a request the server reads.
struct Head {
    target: String,
    content_length: usize,
    attempt: u32,
    close: bool,
    chunked: bool,
}

async fn read_head(reader: &mut BufReader<TcpStream>, line: &mut String) -> Option<Head> {
    // The request line (skipping stray blank lines between requests).
    loop {
        line.clear();
        if reader.read_line(line).await.ok()? == 0 {
            return None;
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut head = Head {
        target: String::new(),
        content_length: 0,
        attempt: 1,
        close: line.trim_end().ends_with("HTTP/1.0"),
        chunked: false,
    };
    loop {
        line.clear();
        if reader.read_line(line).await.ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Some(head);
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => head.content_length = value.parse().ok()?,
            "x-amz-target" => head.target = value.to_string(),
            // `attempt=2; max=3` on the SDK's retries.
            "amz-sdk-request" => {
                head.attempt = value
                    .split(';')
                    .find_map(|p| p.trim().strip_prefix("attempt="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1)
            }
            "connection" => head.close = value.eq_ignore_ascii_case("close"),
            "transfer-encoding" => head.chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut out = Vec::with_capacity(4096);
    loop {
        let Some(head) = read_head(&mut reader, &mut line).await else {
            return;
        };
        if head.chunked || head.content_length > MAX_BODY {
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            return;
        }
        let mut body = vec![0; head.content_length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let reply = {
            let call = api::handle(&shared, &head.target, &body, head.attempt);
            tokio::pin!(call);
            tokio::select! {
                reply = &mut call => reply,
                () = peer_gone(reader.get_ref()) => {
                    shared.abandoned(&head.target);
                    return;
                }
            }
        };
        match reply {
            Reply::Answer {
                status,
                body,
                query_error,
            } => {
                out.clear();
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 {status} {}\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nx-amzn-requestid: {:016x}\r\n",
                        reason(status),
                        body.len(),
                        REQUEST_IDS.fetch_add(1, Ordering::Relaxed),
                    )
                    .as_bytes(),
                );
                if let Some(q) = query_error {
                    out.extend_from_slice(format!("x-amzn-query-error: {q}\r\n").as_bytes());
                }
                if head.close {
                    out.extend_from_slice(b"connection: close\r\n");
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&body);
                if reader.get_mut().write_all(&out).await.is_err() || head.close {
                    return;
                }
            }
            Reply::Reset => {
                // SO_LINGER 0: closing sends a RST instead of a FIN.
                let _ = reader.get_ref().set_zero_linger();
                return;
            }
            Reply::Close => return,
        }
    }
}

/// Resolves when the client closes its end (the SDK sends nothing more while a call is pending).
async fn peer_gone(stream: &TcpStream) {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        // Pipelined bytes: not a hang-up; leave them for after this call.
        Ok(_) => std::future::pending().await,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}
