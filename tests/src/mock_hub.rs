//! A mock Hugging Face Hub on 127.0.0.1 for the tests: one model repository
//! served the way the real Hub serves it to `hf-hub` 1.0.
//!
//! What hf-hub 1.0 asks, and what the mock answers:
//!
//! - `HEAD /{owner}/{name}/resolve/{revision}/{path}` (revision and path
//!   percent-encoded; `If-None-Match: "ETAG"` once the file is cached): `200`
//!   with `ETag` (the blob's name in the cache), `X-Repo-Commit` (the
//!   snapshot's name) and `Content-Length`, or `304` with the same headers
//!   when the `ETag` matches. No `X-Xet-Hash`: that would switch hf-hub to
//!   Xet storage.
//! - then, unless the blob is cached, `GET` on the same URL: the bytes.
//! - `GET /api/models/{owner}/{name}[/revision/{revision}]`: the repository's
//!   JSON (`id`, `sha`, `siblings`). Parallax asks it once after a `404`, as
//!   hf-hub reports every `404` of a download as a missing file.
//!
//! Errors carry the real Hub's `X-Error-Code`: an unknown repository is `401
//! RepoNotFound` without a token (what the Hub tells anonymous callers) and
//! `404 RepoNotFound` with one; an unknown revision `404 RevisionNotFound`; an
//! unknown file `404 EntryNotFound` with `X-Repo-Commit` (hf-hub then writes
//! a `.no_exist` marker, so offline runs know the file is absent).
//!
//! Revisions: `main` and [`COMMIT`]. Every request is recorded (method, path,
//! `Authorization`). The server stops when the [`MockHub`] is dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The commit every file of the mock repository is at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Request {
    /// `HEAD` or `GET`.
    pub method: String,
    /// The path as sent (percent-encoded), e.g.
    /// `/owner/name/resolve/main/config.json`.
    pub path: String,
    /// The `Authorization` header, if sent.
    pub authorization: Option<String>,
}

/// A running mock Hub; stops when dropped.
pub struct MockHub {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Repo {
    id: String,
    files: BTreeMap<String, Vec<u8>>,
}

/// The files under `dir` (recursively) by their `/`-separated path below
/// it, ready for [`MockHub::start`].
pub fn files_in(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if let Ok(rel) = path.strip_prefix(root) {
                let name = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(name, std::fs::read(&path)?);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

impl MockHub {
    /// Serves `files` (repository path → bytes) as repository `repo_id`
    /// (`owner/name`) at revision `main` (and at [`COMMIT`]).
    pub fn start(repo_id: &str, files: BTreeMap<String, Vec<u8>>) -> MockHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mock hub");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let repo = Arc::new(Repo {
            id: repo_id.to_string(),
            files,
        });
        let (log, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (repo, log) = (repo.clone(), log.clone());
                        std::thread::spawn(move || serve(stream, &repo, &log));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        MockHub {
            url,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The endpoint, for `HF_ENDPOINT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The requests so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("request log").clone()
    }

    /// The paths of the `GET` requests so far (the downloads and API calls).
    pub fn gets(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET")
            .map(|r| r.path)
            .collect()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One parsed request: method, path, and the headers the mock cares about.
struct Incoming {
    method: String,
    path: String,
    authorization: Option<String>,
    if_none_match: Option<String>,
}

/// Reads one request head; `None` when the connection is closed.
fn read_request(reader: &mut impl BufRead) -> Option<Incoming> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let mut req = Incoming {
        method: parts.next()?.to_string(),
        path: parts.next()?.to_string(),
        authorization: None,
        if_none_match: None,
    };
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            return Some(req);
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = Some(v.trim().to_string());
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => req.authorization = v,
                "if-none-match" => req.if_none_match = v,
                _ => {}
            }
        }
    }
}

/// Answers the requests of one connection (keep-alive) until it closes.
fn serve(stream: TcpStream, repo: &Repo, log: &Mutex<Vec<Request>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut out = stream;
    while let Some(req) = read_request(&mut reader) {
        if let Ok(mut log) = log.lock() {
            log.push(Request {
                method: req.method.clone(),
                path: req.path.clone(),
                authorization: req.authorization.clone(),
            });
        }
        let reply = respond(repo, &req);
        let mut head = format!("HTTP/1.1 {}\r\n", reply.status);
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        // HEAD and 304 carry the length of the body they do not send
        let send_body = req.method == "GET" && !reply.status.starts_with("304");
        if send_body && out.write_all(&reply.body).is_err() {
            return;
        }
        let _ = out.flush();
    }
}

struct Reply {
    status: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// An error reply; `code` is the `X-Error-Code` (none when empty).
fn error(status: &'static str, code: &str, message: &str) -> Reply {
    let mut headers = vec![
        ("X-Error-Message", message.to_string()),
        ("Content-Type", "application/json".to_string()),
    ];
    if !code.is_empty() {
        headers.push(("X-Error-Code", code.to_string()));
    }
    Reply {
        status,
        headers,
        body: format!("{{\"error\":\"{message}\"}}").into_bytes(),
    }
}

/// `%XX` escapes decoded (what hf-hub encodes in revisions and file paths).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// A content hash that names a file's cache blob, quoted as an `ETag`.
fn etag(bytes: &[u8]) -> String {
    // FNV-1a, 64 bit, and the length: stable and distinct enough for tests
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("\"{h:016x}{:08x}\"", bytes.len())
}

fn respond(repo: &Repo, req: &Incoming) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    let repo_missing = || {
        // the real Hub tells anonymous callers 401, token holders 404
        let status = match req.authorization {
            Some(_) => "404 Not Found",
            None => "401 Unauthorized",
        };
        error(status, "RepoNotFound", "Repository not found")
    };
    let known_revision = |rev: &str| rev == "main" || rev == COMMIT;
    let revision_missing = || error("404 Not Found", "RevisionNotFound", "Invalid rev id");
    // /api/models/{owner}/{name}[/revision/{rev}]
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let (id, rev) = match rest.split_once("/revision/") {
            Some((id, rev)) => (id, decode(rev)),
            None => (rest, "main".to_string()),
        };
        if id != repo.id {
            return repo_missing();
        }
        if !known_revision(&rev) {
            return revision_missing();
        }
        let siblings: Vec<String> = repo
            .files
            .keys()
            .map(|f| format!("{{\"rfilename\":\"{f}\"}}"))
            .collect();
        let body = format!(
            "{{\"id\":\"{}\",\"sha\":\"{COMMIT}\",\"private\":false,\"siblings\":[{}]}}",
            repo.id,
            siblings.join(",")
        );
        return Reply {
            status: "200 OK",
            headers: vec![("Content-Type", "application/json".to_string())],
            body: body.into_bytes(),
        };
    }
    // /{owner}/{name}/resolve/{rev}/{path}
    let Some((id, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return error("404 Not Found", "", "Not found");
    };
    if id != repo.id {
        return repo_missing();
    }
    let Some((rev, file)) = rest.split_once('/') else {
        return error("404 Not Found", "EntryNotFound", "Entry not found");
    };
    if !known_revision(&decode(rev)) {
        return revision_missing();
    }
    let commit = ("X-Repo-Commit", COMMIT.to_string());
    let Some(bytes) = repo.files.get(&decode(file)) else {
        let mut r = error("404 Not Found", "EntryNotFound", "Entry not found");
        r.headers.push(commit);
        return r;
    };
    let tag = etag(bytes);
    let status = match &req.if_none_match {
        Some(t) if *t == tag => "304 Not Modified",
        _ => "200 OK",
    };
    Reply {
        status,
        headers: vec![("ETag", tag), commit],
        body: bytes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(decode("refs%2Fpr%2F1"), "refs/pr/1");
        assert_eq!(decode("a%20b/c.json"), "a b/c.json");
        assert_eq!(decode("100%"), "100%");
    }
}
