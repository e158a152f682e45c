//! The admin API: faults at run time over HTTP with JSON bodies, on loopback unless told
//! otherwise (`uatap fault` calls it).
//!
//! | request | body | answer |
//! |---|---|---|
//! | `GET /faults` | | `{"faults": [{"id", "spec", "state", "applied"}]}` |
//! | `POST /faults` | `{"spec": "cut after PublishResponse", "conn": 3}` (`conn` optional) | `201 {"id", "spec"}`, or `400 {"error"}` |
//! | `DELETE /faults/ID` | | `200 {"removed": ID}` or `404` |
//! | `GET /connections` | | `{"connections": [{"id", "listen", "client", "opened"}]}` |

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
#[cfg(test)]
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::spec::FaultSpec;
use super::table::Faults;
use crate::access::{Access, Io};

/// Longest request head.
const MAX_HEAD: usize = 8 * 1024;
/// Longest request body.
const MAX_BODY: usize = 64 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most requests answered at once.
const MAX_CLIENTS: usize = 16;

/// Serves the admin API on `listener` until `shutdown` turns true, over TLS and with a token
/// when `access` says so.
pub async fn serve(
    listener: TcpListener,
    faults: Arc<Faults>,
    access: Access,
    shutdown: watch::Receiver<bool>,
) {
    let token = access.clone();
    crate::metrics::accept_loop(listener, MAX_CLIENTS, access, shutdown, move |s| {
        answer(s, faults.clone(), token.clone())
    })
    .await;
}

/// A request as read: method, path, body.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// An error status and why, answered instead of a request that can't be read.
type Refusal = (&'static str, String);

/// Method, path and Content-Length of a request head (up to and including the blank line).
fn parse_head(head: &[u8]) -> Result<(String, String, usize), Refusal> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let mut length = 0usize;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v
                    .trim()
                    .parse()
                    .map_err(|_| ("400 Bad Request", "bad Content-Length".to_string()))?;
            }
        }
    }
    if length > MAX_BODY {
        return Err((
            "413 Content Too Large",
            format!("bodies are limited to {MAX_BODY} bytes"),
        ));
    }
    Ok((method, path, length))
}

/// Where the head of a request ends (after its blank line), once it has arrived.
fn head_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i.saturating_add(4))
}

/// Answers one whole request given as bytes (head and body), as the API would: the sans-IO
/// core of the admin API, which the fuzz target drives.
pub fn respond_to_bytes(data: &[u8], faults: &Faults) -> (&'static str, Value) {
    let Some(end) = head_end(data).filter(|&e| e <= MAX_HEAD.saturating_add(4)) else {
        return ("400 Bad Request", json!({ "error": "incomplete request" }));
    };
    match parse_head(data.get(..end).unwrap_or(&[])) {
        Ok((method, path, length)) => {
            let body = data.get(end..).unwrap_or(&[]);
            if body.len() < length {
                return ("400 Bad Request", json!({ "error": "incomplete body" }));
            }
            let body = body.get(..length).unwrap_or(&[]).to_vec();
            respond(&Request { method, path, body }, faults)
        }
        Err((status, why)) => (status, json!({ "error": why })),
    }
}

/// Reads one request (head and a Content-Length body), or an error status to answer with.
async fn read_request(s: &mut Box<dyn Io>, access: &Access) -> Result<Request, Refusal> {
    let mut data = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let read = async {
        let end = loop {
            if let Some(i) = head_end(&data) {
                break i;
            }
            if data.len() > MAX_HEAD {
                return Err((
                    "431 Request Header Fields Too Large",
                    "head too large".into(),
                ));
            }
            let n = s
                .read(&mut buf)
                .await
                .map_err(|e| ("400 Bad Request", e.to_string()))?;
            if n == 0 {
                return Err(("400 Bad Request", "incomplete request".into()));
            }
            data.extend_from_slice(buf.get(..n).unwrap_or(&[]));
        };
        let head = data.get(..end).unwrap_or(&[]);
        if !access.authorized(head) {
            return Err((
                "401 Unauthorized",
                "a bearer token is needed (Authorization: Bearer TOKEN)".into(),
            ));
        }
        let (method, path, length) = parse_head(head)?;
        let mut body = data.get(end..).unwrap_or(&[]).to_vec();
        while body.len() < length {
            let n = s
                .read(&mut buf)
                .await
                .map_err(|e| ("400 Bad Request", e.to_string()))?;
            if n == 0 {
                return Err(("400 Bad Request", "incomplete body".into()));
            }
            body.extend_from_slice(buf.get(..n).unwrap_or(&[]));
        }
        body.truncate(length);
        Ok(Request { method, path, body })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .unwrap_or(Err(("408 Request Timeout", "request too slow".into())))
}

/// Answers one request: status line and JSON body.
fn respond(r: &Request, faults: &Faults) -> (&'static str, Value) {
    let path = r.path.split(['?', '#']).next().unwrap_or("");
    match (r.method.as_str(), path) {
        ("GET", "/faults") => (
            "200 OK",
            json!({ "faults": faults.list().iter().map(|e| json!({
                "id": e.id,
                "spec": e.spec.to_string(),
                "state": e.state_name(),
                "applied": e.applied,
            })).collect::<Vec<_>>() }),
        ),
        ("POST", "/faults") => {
            let v: Value = match serde_json::from_slice(&r.body) {
                Ok(v) => v,
                Err(e) => {
                    return (
                        "400 Bad Request",
                        json!({ "error": format!("the body is not JSON: {e}") }),
                    )
                }
            };
            let Some(line) = v.get("spec").and_then(Value::as_str) else {
                return (
                    "400 Bad Request",
                    json!({ "error": "expected {\"spec\": \"cut at 10s\"} (and an optional \"conn\": N)" }),
                );
            };
            let mut spec = match FaultSpec::parse(line) {
                Ok(s) => s,
                Err(e) => return ("400 Bad Request", json!({ "error": e })),
            };
            match v.get("conn") {
                None | Some(Value::Null) => {}
                Some(c) => match c.as_u64() {
                    Some(c) => spec.conn = Some(c),
                    None => {
                        return (
                            "400 Bad Request",
                            json!({ "error": "conn is a connection number" }),
                        )
                    }
                },
            }
            let text = spec.to_string();
            let id = faults.add(spec);
            ("201 Created", json!({ "id": id, "spec": text }))
        }
        ("DELETE", p) if p.starts_with("/faults/") => {
            match p.trim_start_matches("/faults/").parse::<u64>() {
                Ok(id) if faults.remove(id) => ("200 OK", json!({ "removed": id })),
                Ok(id) => (
                    "404 Not Found",
                    json!({ "error": format!("no fault #{id}") }),
                ),
                Err(_) => ("400 Bad Request", json!({ "error": "DELETE /faults/ID" })),
            }
        }
        ("GET", "/connections") => (
            "200 OK",
            json!({ "connections": faults.connections().into_iter().map(|(id, listen, client, opened)| json!({
                "id": id,
                "listen": listen.to_string(),
                "client": client.to_string(),
                "opened": opened.to_rfc3339(),
            })).collect::<Vec<_>>() }),
        ),
        (_, "/faults" | "/connections") => (
            "405 Method Not Allowed",
            json!({ "error": "GET/POST /faults, DELETE /faults/ID, GET /connections" }),
        ),
        _ => (
            "404 Not Found",
            json!({ "error": "uatap's admin API: GET/POST /faults, DELETE /faults/ID, GET /connections" }),
        ),
    }
}

async fn answer(mut s: Box<dyn Io>, faults: Arc<Faults>, access: Access) {
    let (status, body) = match read_request(&mut s, &access).await {
        Ok(r) => respond(&r, &faults),
        Err((status, why)) => (status, json!({ "error": why })),
    };
    let body = body.to_string();
    let challenge = if status.starts_with("401") {
        "WWW-Authenticate: Bearer realm=\"uatap\"\r\n"
    } else {
        ""
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\n{challenge}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, s.write_all(reply.as_bytes())).await;
    let _ = s.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    async fn call(addr: std::net::SocketAddr, req: &str) -> (String, Value) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (
            head.lines().next().unwrap().to_string(),
            serde_json::from_str(body).unwrap(),
        )
    }

    fn post(body: &str) -> String {
        format!(
            "POST /faults HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn add_list_remove_and_errors() {
        let (tx, _rx) = mpsc::channel(8);
        let faults = Faults::new(tx);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, stop_rx) = watch::channel(false);
        tokio::spawn(serve(listener, faults.clone(), Access::open(), stop_rx));

        let (status, v) = call(
            addr,
            &post(r#"{"spec": "cut after PublishResponse seq=12", "conn": 4}"#),
        )
        .await;
        assert_eq!(status, "HTTP/1.1 201 Created");
        assert_eq!(v["id"], 1);
        assert_eq!(v["spec"], "cut after PublishResponse seq=12 conn 4");

        let (status, v) = call(addr, "GET /faults HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(v["faults"][0]["state"], "pending");
        assert_eq!(v["faults"][0]["applied"], 0);

        let (status, v) = call(addr, &post(r#"{"spec": "explode"}"#)).await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert!(v["error"].as_str().unwrap().contains("unknown fault"));
        let (status, _) = call(addr, &post("not json")).await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");

        faults.register(
            9,
            "127.0.0.1:4841".parse().unwrap(),
            "127.0.0.1:5555".parse().unwrap(),
        );
        let (_, v) = call(addr, "GET /connections HTTP/1.1\r\n\r\n").await;
        assert_eq!(v["connections"][0]["id"], 9);
        assert_eq!(v["connections"][0]["client"], "127.0.0.1:5555");

        let (status, v) = call(addr, "DELETE /faults/1 HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(v["removed"], 1);
        let (status, _) = call(addr, "DELETE /faults/1 HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        assert!(faults.list().is_empty());

        let big = format!(
            "POST /faults HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let (status, _) = call(addr, &big).await;
        assert_eq!(status, "HTTP/1.1 413 Content Too Large");
    }

    #[test]
    fn whole_requests_as_bytes() {
        let (tx, _rx) = mpsc::channel(8);
        let faults = Faults::new(tx);
        let (status, v) = respond_to_bytes(post(r#"{"spec": "cut at 10s"}"#).as_bytes(), &faults);
        assert_eq!(status, "201 Created");
        assert_eq!(v["spec"], "cut at 10s");
        let (status, _) = respond_to_bytes(b"GET /faults HTTP/1.1\r\n", &faults);
        assert_eq!(status, "400 Bad Request", "no blank line: incomplete");
        let (status, v) = respond_to_bytes(
            b"POST /faults HTTP/1.1\r\nContent-Length: 99\r\n\r\n{}",
            &faults,
        );
        assert_eq!(
            (status, v["error"].as_str()),
            ("400 Bad Request", Some("incomplete body"))
        );
        let (status, _) = respond_to_bytes(
            b"POST /faults HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
            &faults,
        );
        assert_eq!(status, "413 Content Too Large");
        let (status, v) = respond_to_bytes(b"GET /faults HTTP/1.1\r\n\r\n", &faults);
        assert_eq!(status, "200 OK");
        assert_eq!(v["faults"].as_array().map(Vec::len), Some(1));
    }
}
