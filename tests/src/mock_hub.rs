//! A mock Hugging Face Hub on 127.0.0.1 for the tests: serves one model
//! repository's files the way the real Hub's `resolve` endpoint does for
//! `hf-hub` 1.0 — `HEAD` then `GET` on `/{owner}/{name}/resolve/{rev}/{path}`,
//! with `ETag` (the blob name in the cache), `X-Repo-Commit` and
//! `Content-Length`, and no `X-Xet-Hash` (which would switch hf-hub to Xet
//! storage). An unknown repository is `401` with `X-Error-Code:
//! RepoNotFound` (as the real Hub answers anonymous requests), an unknown
//! revision or file `404` with `RevisionNotFound` / `EntryNotFound`.
//! Every request is recorded (method, path, `Authorization`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The commit every file of the mock repository is at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Request {
    /// `HEAD` or `GET`.
    pub method: String,
    /// The path, e.g. `/owner/name/resolve/main/config.json`.
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

fn etag(bytes: &[u8]) -> String {
    // FNV-1a, 64 bit: any stable content hash names the cache blob
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}{:08x}", bytes.len())
}

impl MockHub {
    /// Serves `files` (repository path → bytes) as repository `repo_id` at
    /// revision `main` (and at [`COMMIT`]).
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
        let (reqs, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (repo, reqs) = (repo.clone(), reqs.clone());
                        std::thread::spawn(move || serve(stream, &repo, &reqs));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
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

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
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

/// Answers the requests of one connection (keep-alive) until it closes.
fn serve(stream: TcpStream, repo: &Repo, log: &Mutex<Vec<Request>>) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut authorization = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("authorization") {
                    authorization = Some(v.trim().to_string());
                }
            }
        }
        log.lock().unwrap().push(Request {
            method: method.clone(),
            path: path.clone(),
            authorization,
        });
        let (status, headers, body) = respond(repo, &path);
        let mut head = format!("HTTP/1.1 {status}\r\n");
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method == "GET" && out.write_all(&body).is_err() {
            return;
        }
        let _ = out.flush();
    }
}

fn respond(repo: &Repo, path: &str) -> (&'static str, Vec<(String, String)>, Vec<u8>) {
    let path = path.split('?').next().unwrap_or("");
    let error = |status, code: &str| {
        (
            status,
            vec![("X-Error-Code".to_string(), code.to_string())],
            Vec::new(),
        )
    };
    let prefix = format!("/{}/resolve/", repo.id);
    let Some(rest) = path.strip_prefix(&prefix) else {
        return error("401 Unauthorized", "RepoNotFound");
    };
    let Some((rev, file)) = rest.split_once('/') else {
        return error("404 Not Found", "EntryNotFound");
    };
    if rev != "main" && rev != COMMIT {
        return error("404 Not Found", "RevisionNotFound");
    }
    let file = file.replace("%20", " ");
    match repo.files.get(&file) {
        Some(bytes) => (
            "200 OK",
            vec![
                ("ETag".to_string(), format!("\"{}\"", etag(bytes))),
                ("X-Repo-Commit".to_string(), COMMIT.to_string()),
            ],
            bytes.clone(),
        ),
        None => {
            let mut r = error("404 Not Found", "EntryNotFound");
            r.1.push(("X-Repo-Commit".to_string(), COMMIT.to_string()));
            r
        }
    }
}
