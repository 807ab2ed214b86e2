//! `bedside serve`: the web page (`www/`) on this machine only (127.0.0.1), with the headers
//! the page relies on: correct MIME types (`application/wasm` for streaming compilation), a
//! Content-Security-Policy that allows no foreign origin, and cross-origin isolation
//! (COOP/COEP, so wasm threads can be added later). `--model` serves a bundle at
//! `/model.gguf`, the URL the page loads by default.
//!
//! The server only reads files under the root (and the one model file): a path with `..`,
//! a hidden segment or a backslash is refused before it reaches the file system, and the
//! resolved file must still lie under the root after symlinks.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};
use clap::Args;
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

/// The policy of every response: only this origin, wasm compilation allowed, no inline
/// scripts or styles, no plugins, no form posts. `www/index.html` carries the same policy in
/// a meta tag (minus `frame-ancestors`, which meta tags cannot set) for other static servers.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
connect-src 'self'; worker-src 'self'; img-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'none'";

/// Where the `--model` bundle appears.
pub const MODEL_PATH: &str = "/model.gguf";

/// Requests are answered by this many threads, so a large bundle download does not hold up
/// the page's scripts.
const THREADS: usize = 4;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// A bundle to serve at /model.gguf; the page loads it on open.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The folder to serve [default: ./www, else the www/ folder of the source tree].
    #[arg(long)]
    pub root: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let root = match args.root {
        Some(root) => root,
        None => default_root()?,
    };
    let site = Site::new(&root, args.model.as_deref())?;
    let running = start(site, args.port)?;
    println!("serving {} on http://127.0.0.1:{}/", root.display(), running.port());
    if let Some(model) = &args.model {
        println!("model: {} at http://127.0.0.1:{}{MODEL_PATH}", model.display(), running.port());
    }
    println!("press Ctrl-C to stop");
    running.wait();
    Ok(())
}

/// `./www` when run from the repository, else the source tree's `www/` (a `cargo build` binary).
fn default_root() -> Result<PathBuf> {
    let here = PathBuf::from("www");
    if here.join("index.html").is_file() {
        return Ok(here);
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www");
    if source.join("index.html").is_file() {
        return Ok(source);
    }
    bail!("no www/index.html here or in the source tree: pass --root <folder with index.html>")
}

/// What the server serves: a root folder and, optionally, one bundle at `/model.gguf`.
#[derive(Debug, Clone)]
pub struct Site {
    root: PathBuf,
    model: Option<PathBuf>,
}

impl Site {
    pub fn new(root: &Path, model: Option<&Path>) -> Result<Site> {
        let root = root.canonicalize().with_context(|| format!("--root {}", root.display()))?;
        if !root.is_dir() {
            bail!("--root {} is not a folder", root.display());
        }
        let model = match model {
            Some(path) => Some(check_bundle(path)?),
            None => None,
        };
        Ok(Site { root, model })
    }
}

/// Fails early on a missing file or one that is not GGUF; the page checks the rest.
fn check_bundle(path: &Path) -> Result<PathBuf> {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .with_context(|| format!("--model {}", path.display()))?;
    if &magic != b"GGUF" {
        bail!("--model {}: not a bundle (no GGUF magic); make one with bedside export", path.display());
    }
    Ok(path.to_path_buf())
}

/// A started server; dropping it stops the threads.
pub struct Running {
    server: Arc<Server>,
    port: u16,
    threads: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl Running {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Blocks until the server stops.
    pub fn wait(mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // One unblock wakes one thread blocked in recv().
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Binds 127.0.0.1:`port` (loopback only: notes must not be reachable from the network) and
/// answers requests on background threads.
pub fn start(site: Site, port: u16) -> Result<Running> {
    let server = Server::http(("127.0.0.1", port)).map_err(|e| anyhow::anyhow!("binding 127.0.0.1:{port}: {e}"))?;
    let port = server.server_addr().to_ip().map(|a| a.port()).unwrap_or(port);
    let server = Arc::new(server);
    let site = Arc::new(site);
    let stopping = Arc::new(AtomicBool::new(false));
    let threads = (0..THREADS)
        .map(|_| {
            let (server, site, stopping) = (Arc::clone(&server), Arc::clone(&site), Arc::clone(&stopping));
            std::thread::spawn(move || loop {
                match server.recv() {
                    Ok(request) => respond(&site, request),
                    // recv() fails when unblocked for shutdown, or on a failed accept (retry).
                    Err(_) if stopping.load(Ordering::SeqCst) => break,
                    Err(_) => continue,
                }
            })
        })
        .collect();
    Ok(Running { server, port, threads, stopping })
}

fn header(name: &str, value: &str) -> Header {
    // Names and values are ASCII constants, or an ETag made of hex digits.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

/// Headers on every response, errors included.
fn common_headers() -> Vec<Header> {
    vec![
        header("Content-Security-Policy", &format!("{CSP}; frame-ancestors 'none'")),
        header("Cross-Origin-Opener-Policy", "same-origin"),
        header("Cross-Origin-Embedder-Policy", "require-corp"),
        header("Cross-Origin-Resource-Policy", "same-origin"),
        header("X-Content-Type-Options", "nosniff"),
        header("Referrer-Policy", "no-referrer"),
        // Always revalidate (cheap on localhost, answered by 304): a rebuilt page or
        // bundle is never stale. The page keeps the bundle in its own cache.
        header("Cache-Control", "no-cache"),
    ]
}

fn respond(site: &Site, request: Request) {
    let response = match request.method() {
        Method::Get | Method::Head => answer(site, &request),
        _ => plain(405, "only GET and HEAD"),
    };
    // A client that hung up is not an error worth reporting.
    let _ = match response {
        Answer::File(file, mime, etag) => {
            let mut response = Response::from_file(file);
            for h in common_headers() {
                response.add_header(h);
            }
            response.add_header(header("Content-Type", mime));
            response.add_header(header("ETag", &etag));
            request.respond(response)
        }
        Answer::Status(code, body) => {
            let mut response = Response::from_string(body).with_status_code(StatusCode(code));
            for h in common_headers() {
                response.add_header(h);
            }
            response.add_header(header("Content-Type", "text/plain; charset=utf-8"));
            request.respond(response)
        }
        Answer::NotModified(etag) => {
            let mut response = Response::empty(StatusCode(304));
            for h in common_headers() {
                response.add_header(h);
            }
            response.add_header(header("ETag", &etag));
            request.respond(response)
        }
    };
}

enum Answer {
    File(File, &'static str, String),
    NotModified(String),
    Status(u16, &'static str),
}

fn plain(code: u16, body: &'static str) -> Answer {
    Answer::Status(code, body)
}

fn answer(site: &Site, request: &Request) -> Answer {
    let path = match resolve(site, request.url()) {
        Ok(path) => path,
        Err(answer) => return answer,
    };
    let Ok(file) = File::open(&path) else { return plain(404, "not found") };
    let Ok(meta) = file.metadata() else { return plain(404, "not found") };
    let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let etag = format!("\"{:x}-{:x}\"", meta.len(), modified);
    let matches = request.headers().iter().any(|h| h.field.equiv("If-None-Match") && h.value.as_str() == etag);
    if matches {
        return Answer::NotModified(etag);
    }
    Answer::File(file, mime(&path), etag)
}

/// The file a request path names, or the answer that refuses it.
fn resolve(site: &Site, url: &str) -> Result<PathBuf, Answer> {
    let raw = url.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(raw).ok_or(plain(400, "bad path"))?;
    if !decoded.starts_with('/') {
        return Err(plain(400, "bad path"));
    }
    if decoded == MODEL_PATH {
        if let Some(model) = &site.model {
            return Ok(model.clone());
        }
    }
    let mut path = site.root.clone();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        // `..` and `.` would walk the tree; hidden files are not the page's; a backslash or
        // colon could mean something else to another file system.
        if segment.starts_with('.') || segment.contains(['\\', ':', '\0']) {
            return Err(plain(400, "bad path"));
        }
        path.push(segment);
    }
    if path.is_dir() {
        path.push("index.html");
    }
    // Symlinks must not lead out of the root either.
    match path.canonicalize() {
        Ok(real) if real.starts_with(&site.root) && real.is_file() => Ok(real),
        Ok(_) => Err(plain(404, "not found")),
        Err(_) => Err(plain(404, "not found")),
    }
}

/// `%xx` decoding; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn mime(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "md" | "ts" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "jsonl" => "application/x-ndjson",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpStream;

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    /// A raw HTTP/1.1 request, so the path reaches the server exactly as written (an HTTP
    /// client library would normalise `/../`).
    fn request(port: u16, method: &str, path: &str, extra: &str) -> Reply {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n").unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        Reply { status, headers, body: raw[split + 4..].to_vec() }
    }

    fn site() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir_all(www.join("pkg")).unwrap();
        std::fs::write(www.join("index.html"), "<!doctype html><title>t</title>").unwrap();
        std::fs::write(www.join("pkg/bedside_runtime_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(www.join("app.js"), "export {};").unwrap();
        std::fs::write(www.join(".secret"), "no").unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[package]").unwrap();
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, b"GGUF\x02\0\0\0rest").unwrap();
        (dir, model)
    }

    #[test]
    fn serves_the_page_with_mime_types_and_headers() {
        let (dir, model) = site();
        let running = start(Site::new(&dir.path().join("www"), Some(&model)).unwrap(), 0).unwrap();
        let port = running.port();

        let index = request(port, "GET", "/", "");
        assert_eq!(index.status, 200);
        assert_eq!(index.header("Content-Type"), Some("text/html; charset=utf-8"));
        assert_eq!(index.body, b"<!doctype html><title>t</title>");
        let csp = index.header("Content-Security-Policy").unwrap();
        assert!(csp.starts_with("default-src 'self';") && csp.contains("connect-src 'self'"), "{csp}");
        assert_eq!(index.header("Cross-Origin-Opener-Policy"), Some("same-origin"));
        assert_eq!(index.header("Cross-Origin-Embedder-Policy"), Some("require-corp"));

        let wasm = request(port, "GET", "/pkg/bedside_runtime_bg.wasm", "");
        assert_eq!(wasm.status, 200);
        assert_eq!(wasm.header("Content-Type"), Some("application/wasm"));
        assert_eq!(wasm.header("Content-Length"), Some("8"));
        assert_eq!(
            request(port, "GET", "/app.js?v=1", "").header("Content-Type"),
            Some("text/javascript; charset=utf-8")
        );

        let bundle = request(port, "GET", MODEL_PATH, "");
        assert_eq!(bundle.status, 200);
        assert_eq!(bundle.body, b"GGUF\x02\0\0\0rest");
        let etag = bundle.header("ETag").unwrap().to_string();
        let again = request(port, "GET", MODEL_PATH, &format!("If-None-Match: {etag}\r\n"));
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());

        let head = request(port, "HEAD", MODEL_PATH, "");
        assert_eq!((head.status, head.header("Content-Length")), (200, Some("12")));
        assert!(head.body.is_empty());
        assert_eq!(request(port, "POST", "/", "Content-Length: 0\r\n").status, 405);
        assert_eq!(request(port, "GET", "/missing.js", "").status, 404);
    }

    #[test]
    fn refuses_paths_outside_the_root() {
        let (dir, _) = site();
        let running = start(Site::new(&dir.path().join("www"), None).unwrap(), 0).unwrap();
        let port = running.port();
        for path in ["/../Cargo.toml", "/pkg/../../Cargo.toml", "/%2e%2e/Cargo.toml", "/..%2fCargo.toml", "/.secret"] {
            let reply = request(port, "GET", path, "");
            assert!(reply.status == 400 || reply.status == 404, "{path}: {}", reply.status);
            assert!(!String::from_utf8_lossy(&reply.body).contains("[package]"), "{path} leaked a file");
        }
        assert_eq!(request(port, "GET", "/%ZZ", "").status, 400);
        // Without --model, /model.gguf is just a missing file.
        assert_eq!(request(port, "GET", MODEL_PATH, "").status, 404);
    }

    #[test]
    fn the_page_declares_the_same_policy() {
        let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/index.html");
        let html = std::fs::read_to_string(page).unwrap();
        assert!(html.contains(&format!("content=\"{CSP}\"")), "www/index.html must carry serve::CSP in its meta tag");
    }

    #[test]
    fn refuses_a_model_that_is_not_a_bundle() {
        let (dir, _) = site();
        let err = Site::new(&dir.path().join("www"), Some(&dir.path().join("Cargo.toml"))).unwrap_err();
        assert!(format!("{err:#}").contains("not a bundle"), "{err:#}");
        assert!(Site::new(&dir.path().join("www"), Some(&dir.path().join("nope.gguf"))).is_err());
    }

    #[test]
    fn mime_types() {
        assert_eq!(mime(Path::new("a/b.WASM")), "application/wasm");
        assert_eq!(mime(Path::new("x.gguf")), "application/octet-stream");
        assert_eq!(mime(Path::new("index.d.ts")), "text/plain; charset=utf-8");
    }
}
