//! `bedside serve`: the web page (`www/`) on this machine only (127.0.0.1), with the headers
//! the page relies on: correct MIME types (`application/wasm` for streaming compilation), a
//! Content-Security-Policy that allows no foreign origin, and cross-origin isolation
//! (COOP/COEP, so wasm threads can be added later). `--model` serves a bundle at
//! `/model.gguf`, the URL the page loads by default.
//!
//! The server only reads files under the root (and the one model file): a path with `..`,
//! a hidden segment or a backslash is refused before it reaches the file system, and the
//! resolved file must still lie under the root after symlinks. Only the page's file types
//! are served (never a `.csv`, `.jsonl` or `.txt` of notes lying next to it).
//!
//! It is a local tool, and a web page anywhere can make the browser talk to it, so it is
//! bounded: only requests naming this server in `Host` are answered (a DNS-rebinding page
//! names its own host); a request head is at most [`Limits::max_head_bytes`]; no bodies;
//! idle connections wait in one thread and are closed after [`Limits::head_timeout`]; a
//! fixed pool of workers answers requests, and a client that stops reading a response is
//! dropped after [`Limits::write_timeout`]; running out of file descriptors pauses
//! accepting, never ends it.
//!
//! Hand-written over mio (readiness of many sockets in one thread) and httparse (request
//! heads): the blocking servers (tiny_http) keep a thread per connection and have no head
//! limit or timeouts, and the others need an async runtime.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use mio::net::{TcpListener, TcpStream as MioStream};
use mio::{Events, Interest, Poll, Token, Waker};

/// The policy of every response: only this origin, wasm compilation allowed, no inline
/// scripts or styles, no plugins, no form posts. `www/index.html` carries the same policy in
/// a meta tag (minus `frame-ancestors`, which meta tags cannot set) for other static servers.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
connect-src 'self'; worker-src 'self'; img-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'none'";

/// Where the `--model` bundle appears.
pub const MODEL_PATH: &str = "/model.gguf";

/// The file types the page is made of; anything else under the root is not served.
const SERVED_TYPES: [&str; 9] = ["html", "js", "mjs", "css", "wasm", "gguf", "svg", "png", "ico"];

/// Responses are written in pieces of this size, each within [`Limits::write_timeout`].
const WRITE_CHUNK: usize = 64 * 1024;

/// How long accepting pauses after a failed accept (out of file descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Headers a request may have; more is answered 431.
const MAX_HEADERS: usize = 64;

/// The server's bounds. `Default` is what `bedside serve` uses; tests shorten the timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line plus headers, in bytes; a longer head is answered 431.
    pub max_head_bytes: usize,
    /// How long a connection may take to send a whole request head, from when it opens or
    /// from its previous response; then it is closed.
    pub head_timeout: Duration,
    /// How long a client may take to receive each 64 KiB of a response before it is dropped.
    pub write_timeout: Duration,
    /// Threads that answer requests.
    pub workers: usize,
    /// Connections waiting for a request at once; beyond this, the one waiting longest is
    /// closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            head_timeout: Duration::from_secs(15),
            write_timeout: Duration::from_secs(20),
            workers: 8,
            max_connections: 512,
        }
    }
}

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
    port: u16,
    stopping: Arc<AtomicBool>,
    waker: Arc<Waker>,
    threads: Vec<JoinHandle<()>>,
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
        // The poller ends on waking; the workers end when it drops the job queue (a worker
        // in the middle of a response finishes it or times out first).
        let _ = self.waker.wake();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Binds 127.0.0.1:`port` (loopback only: notes must not be reachable from the network) and
/// answers requests on background threads, within [`Limits::default`].
pub fn start(site: Site, port: u16) -> Result<Running> {
    start_with(site, port, Limits::default())
}

/// [`start`] within other limits.
pub fn start_with(site: Site, port: u16, limits: Limits) -> Result<Running> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(address).with_context(|| format!("binding {address}"))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    let poll = Poll::new().context("starting the server's poller")?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("starting the server's poller")?);
    let stopping = Arc::new(AtomicBool::new(false));
    let (job_sender, job_receiver) = channel::<Job>();
    let (back_sender, back_receiver) = channel::<(TcpStream, Vec<u8>)>();
    let job_receiver = Arc::new(Mutex::new(job_receiver));
    let site = Arc::new(site);

    let mut threads = Vec::with_capacity(limits.workers.max(1) + 1);
    for _ in 0..limits.workers.max(1) {
        let worker = Worker {
            site: Arc::clone(&site),
            limits,
            port,
            jobs: Arc::clone(&job_receiver),
            back: back_sender.clone(),
            waker: Arc::clone(&waker),
        };
        threads.push(std::thread::spawn(move || worker.run()));
    }
    drop(back_sender);
    let mut poller = Poller {
        poll,
        listener,
        limits,
        waiting: HashMap::new(),
        capacity: limits.max_connections.max(1),
        next_token: FIRST_CONNECTION,
        jobs: job_sender,
        back: back_receiver,
        stopping: Arc::clone(&stopping),
    };
    poller.poll.registry().register(&mut poller.listener, LISTENER, Interest::READABLE)?;
    threads.insert(0, std::thread::spawn(move || poller.run()));
    Ok(Running { port, stopping, waker, threads })
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONNECTION: usize = 2;

/// A connection waiting for (the rest of) a request head.
struct Waiting {
    stream: MioStream,
    head: Vec<u8>,
    since: Instant,
}

/// A connection handed to a worker: a complete request head (`Some(length)`, maybe followed
/// by the start of the next request), or one refused with a status before it was complete.
struct Job {
    stream: TcpStream,
    bytes: Vec<u8>,
    head: Result<usize, u16>,
}

/// Waits on the listener and on every connection that has not sent a whole request head yet,
/// in one thread, so idle connections cost no thread.
struct Poller {
    poll: Poll,
    listener: TcpListener,
    limits: Limits,
    waiting: HashMap<Token, Waiting>,
    /// How many may wait: [`Limits::max_connections`], lowered when descriptors run out.
    capacity: usize,
    next_token: usize,
    jobs: Sender<Job>,
    back: Receiver<(TcpStream, Vec<u8>)>,
    stopping: Arc<AtomicBool>,
}

impl Poller {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut accept_again: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let next = self.waiting.values().map(|w| w.since + self.limits.head_timeout).chain(accept_again).min();
            if let Err(error) = self.poll.poll(&mut events, next.map(|at| at.saturating_duration_since(now))) {
                if error.kind() != ErrorKind::Interrupted {
                    std::thread::sleep(ACCEPT_RETRY);
                }
                continue;
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let mut ready = Vec::new();
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept_again = self.accept_pending(),
                    WAKER => {}
                    token => ready.push(token),
                }
            }
            // Kept-alive connections coming back from the workers.
            while let Ok((stream, bytes)) = self.back.try_recv() {
                if stream.set_nonblocking(true).is_ok() {
                    ready.extend(self.add(MioStream::from_std(stream), bytes));
                }
            }
            if accept_again.is_some_and(|at| at <= Instant::now()) {
                accept_again = self.accept_pending();
            }
            for token in ready {
                self.read(token);
            }
            self.close_expired();
        }
    }

    /// Accepts every queued connection. After a failed accept (out of file descriptors, most
    /// likely) with no connection to close, says when to try again: the kernel keeps the rest
    /// queued, and the listener is not reported again until a new one arrives.
    fn accept_pending(&mut self) -> Option<Instant> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Some(token) = self.add(stream, Vec::new()) {
                        // Edge-triggered: bytes that came with the connection raise no event.
                        self.read(token);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::ConnectionAborted) => continue,
                Err(_) => {
                    // Hold fewer waiting connections from now on, leaving descriptors for the
                    // workers' connections and files; then go on accepting, closing the
                    // connections idle longest to make room.
                    let reserve = 2 * self.limits.workers + 2;
                    let held = self.waiting.len().saturating_sub(reserve).max(1);
                    if held < self.capacity {
                        self.capacity = held;
                        while self.waiting.len() > self.capacity {
                            self.close_oldest();
                        }
                        continue;
                    }
                    if self.close_oldest() {
                        continue;
                    }
                    return Some(Instant::now() + ACCEPT_RETRY);
                }
            }
        }
    }

    /// Starts waiting for a request on `stream`; `None` if it could not be registered.
    fn add(&mut self, mut stream: MioStream, head: Vec<u8>) -> Option<Token> {
        if self.waiting.len() >= self.capacity {
            self.close_oldest();
        }
        let token = Token(self.next_token);
        self.next_token = self.next_token.checked_add(1).unwrap_or(FIRST_CONNECTION);
        self.poll.registry().register(&mut stream, token, Interest::READABLE).ok()?;
        self.waiting.insert(token, Waiting { stream, head, since: Instant::now() });
        Some(token)
    }

    fn remove(&mut self, token: Token) -> Option<Waiting> {
        let mut waiting = self.waiting.remove(&token)?;
        let _ = self.poll.registry().deregister(&mut waiting.stream);
        Some(waiting)
    }

    /// Closes the connection waiting longest; false if none is waiting.
    fn close_oldest(&mut self) -> bool {
        match self.waiting.iter().min_by_key(|(_, w)| w.since).map(|(t, _)| *t) {
            Some(token) => self.remove(token).is_some(),
            None => false,
        }
    }

    fn close_expired(&mut self) {
        let now = Instant::now();
        let timeout = self.limits.head_timeout;
        let expired: Vec<Token> =
            self.waiting.iter().filter(|(_, w)| w.since + timeout <= now).map(|(t, _)| *t).collect();
        for token in expired {
            self.remove(token);
        }
    }

    /// Reads what `token` has sent; a complete head (or one refused) goes to the workers.
    fn read(&mut self, token: Token) {
        let max = self.limits.max_head_bytes;
        let Some(waiting) = self.waiting.get_mut(&token) else { return };
        let head = loop {
            match head_length(&waiting.head, max) {
                HeadState::Partial => {}
                HeadState::Done(head) => break head,
            }
            let mut chunk = [0u8; 4096];
            let room = (max - waiting.head.len()).min(chunk.len());
            match waiting.stream.read(&mut chunk[..room]) {
                Ok(0) => {
                    self.remove(token);
                    return;
                }
                Ok(n) => waiting.head.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.remove(token);
                    return;
                }
            }
        };
        let Some(waiting) = self.remove(token) else { return };
        let stream = TcpStream::from(waiting.stream);
        if stream.set_nonblocking(false).is_ok() {
            let _ = self.jobs.send(Job { stream, bytes: waiting.head, head });
        }
    }
}

enum HeadState {
    Partial,
    /// The head's length, or the status refusing it.
    Done(Result<usize, u16>),
}

/// Whether `bytes` begin with a whole request head, within `max` bytes.
fn head_length(bytes: &[u8], max: usize) -> HeadState {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(bytes) {
        Ok(httparse::Status::Complete(length)) => HeadState::Done(Ok(length)),
        Ok(httparse::Status::Partial) if bytes.len() >= max => HeadState::Done(Err(431)),
        Ok(httparse::Status::Partial) => HeadState::Partial,
        Err(httparse::Error::TooManyHeaders) => HeadState::Done(Err(431)),
        Err(_) => HeadState::Done(Err(400)),
    }
}

/// One of the threads that answer requests.
struct Worker {
    site: Arc<Site>,
    limits: Limits,
    port: u16,
    jobs: Arc<Mutex<Receiver<Job>>>,
    back: Sender<(TcpStream, Vec<u8>)>,
    waker: Arc<Waker>,
}

impl Worker {
    fn run(self) {
        loop {
            let job = match self.jobs.lock() {
                Ok(jobs) => jobs.recv(),
                Err(_) => return,
            };
            let Ok(Job { mut stream, bytes, head }) = job else { return };
            let (response, keep_alive) = match head {
                Ok(length) => answer(&self.site, self.port, &bytes[..length]),
                Err(status) => (Response::status(status), false),
            };
            // A client that hung up or stopped reading is not an error worth reporting.
            let sent = response.write(&mut stream, self.limits.write_timeout).is_ok();
            if sent && keep_alive {
                let rest = head.map(|length| bytes[length..].to_vec()).unwrap_or_default();
                if self.back.send((stream, rest)).is_ok() {
                    let _ = self.waker.wake();
                }
            }
        }
    }
}

/// The status `serve` answers to the bytes a connection has sent so far, and whether the
/// connection may stay open; `None` while the head is incomplete. The same two steps as the
/// server (`head_length`, then `answer`), without the socket: the fuzz target's entry point
/// (fuzz/fuzz_targets/serve_request.rs).
pub fn status_for(site: &Site, port: u16, bytes: &[u8], limits: &Limits) -> Option<(u16, bool)> {
    match head_length(bytes, limits.max_head_bytes) {
        HeadState::Partial => None,
        HeadState::Done(Err(status)) => Some((status, false)),
        HeadState::Done(Ok(length)) => {
            let (response, keep_alive) = answer(site, port, &bytes[..length]);
            Some((response.status, keep_alive))
        }
    }
}

/// An answer and whether the connection may stay open for another request.
fn answer(site: &Site, port: u16, head: &[u8]) -> (Response, bool) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let (Ok(httparse::Status::Complete(_)), Some(method), Some(target), Some(version)) =
        (request.parse(head), request.method, request.path, request.version)
    else {
        return (Response::status(400), false);
    };
    let headers: &[httparse::Header] = request.headers;
    let values = |name: &str| -> Vec<&[u8]> {
        headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value).collect()
    };
    // A page elsewhere that rebinds its own host name to 127.0.0.1 sends that name.
    let host_ok = match values("Host").as_slice() {
        [] => version == 0,
        [host] => is_this_host(host, port),
        _ => false,
    };
    if !host_ok {
        return (Response::status(421), false);
    }
    if method != "GET" && method != "HEAD" {
        return (Response::status(405), false);
    }
    let has_body = !values("Transfer-Encoding").is_empty()
        || values("Content-Length").iter().any(|v| v.is_empty() || v.iter().any(|b| *b != b'0'));
    if has_body {
        return (Response::status(413), false);
    }
    let closes = values("Connection").iter().any(|v| v.eq_ignore_ascii_case(b"close"));
    let keep_alive = version == 1 && !closes;
    let if_none_match = values("If-None-Match");
    let mut response = match serve_file(site, target, &if_none_match) {
        Ok(response) | Err(response) => response,
    };
    if method == "HEAD" {
        response.head_only = true;
    }
    (response, keep_alive)
}

/// `127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT` (without `:PORT` on port 80).
fn is_this_host(host: &[u8], port: u16) -> bool {
    let Ok(host) = std::str::from_utf8(host) else { return false };
    let host = host.trim().to_ascii_lowercase();
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|name| host == format!("{name}:{port}") || (port == 80 && host == *name))
}

fn serve_file(site: &Site, target: &str, if_none_match: &[&[u8]]) -> Result<Response, Response> {
    let path = resolve(site, target)?;
    let file = File::open(&path).map_err(|_| Response::status(404))?;
    let meta = file.metadata().map_err(|_| Response::status(404))?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let etag = format!("\"{:x}-{:x}\"", meta.len(), modified);
    if if_none_match.contains(&etag.as_bytes()) {
        return Ok(Response { status: 304, content_type: None, etag: Some(etag), body: Body::Empty, head_only: false });
    }
    Ok(Response {
        status: 200,
        content_type: Some(mime(&path)),
        etag: Some(etag),
        body: Body::File(file, meta.len()),
        head_only: false,
    })
}

enum Body {
    Empty,
    Text(&'static str),
    File(File, u64),
}

struct Response {
    status: u16,
    content_type: Option<&'static str>,
    etag: Option<String>,
    body: Body,
    /// An answer to HEAD: the headers of the GET answer, no body.
    head_only: bool,
}

impl Response {
    /// A refusal with a short plain-text reason.
    fn status(status: u16) -> Response {
        let text = match status {
            400 => "bad request",
            403 => "this file type is not served",
            404 => "not found",
            405 => "only GET and HEAD",
            413 => "requests have no body here",
            421 => "this server answers only to 127.0.0.1, localhost or [::1] with its port in Host",
            431 => "request head too large",
            _ => "error",
        };
        Response {
            status,
            content_type: Some("text/plain; charset=utf-8"),
            etag: None,
            body: Body::Text(text),
            head_only: false,
        }
    }

    fn write(self, stream: &mut TcpStream, timeout: Duration) -> std::io::Result<()> {
        let length = match &self.body {
            Body::Empty => 0,
            Body::Text(text) => text.len() as u64,
            Body::File(_, length) => *length,
        };
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in COMMON_HEADERS {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Security-Policy: {CSP}; frame-ancestors 'none'\r\n"));
        if let Some(content_type) = self.content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        if let Some(etag) = &self.etag {
            head.push_str(&format!("ETag: {etag}\r\n"));
        }
        if self.status == 405 {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        if self.status != 304 {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        head.push_str("\r\n");
        write_within(stream, head.as_bytes(), timeout)?;
        if self.head_only {
            return Ok(());
        }
        match self.body {
            Body::Empty => Ok(()),
            Body::Text(text) => write_within(stream, text.as_bytes(), timeout),
            Body::File(file, length) => {
                let mut file = file.take(length);
                let mut chunk = vec![0u8; WRITE_CHUNK];
                let mut sent = 0u64;
                loop {
                    let n = file.read(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    write_within(stream, &chunk[..n], timeout)?;
                    sent += n as u64;
                }
                if sent != length {
                    // The file shrank meanwhile: the announced length cannot be kept.
                    return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "file shrank"));
                }
                Ok(())
            }
        }
    }
}

/// Headers on every response, errors included (with the CSP).
const COMMON_HEADERS: [(&str, &str); 6] = [
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Embedder-Policy", "require-corp"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    // Always revalidate (cheap on localhost, answered by 304): a rebuilt page or bundle is
    // never stale. The page keeps the bundle in its own cache.
    ("Cache-Control", "no-cache"),
];

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

/// Writes all of `bytes` within `timeout` (not per system call: a client reading a byte now
/// and then would otherwise hold the worker for ever).
fn write_within(stream: &mut TcpStream, mut bytes: &[u8], timeout: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + timeout;
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn is_served_type(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    SERVED_TYPES.contains(&ext.as_str())
}

/// The file a request path names, or the answer that refuses it.
fn resolve(site: &Site, url: &str) -> Result<PathBuf, Response> {
    let raw = url.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(raw).ok_or(Response::status(400))?;
    if !decoded.starts_with('/') {
        return Err(Response::status(400));
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
            return Err(Response::status(400));
        }
        path.push(segment);
    }
    // Refused by name before the file system is asked, so whether such a file exists is
    // not told either.
    if !decoded.ends_with('/') && path.extension().is_some() && !is_served_type(&path) {
        return Err(Response::status(403));
    }
    if path.is_dir() {
        path.push("index.html");
    }
    // Symlinks must not lead out of the root, nor to a file type that is not served.
    match path.canonicalize() {
        Ok(real) if real.starts_with(&site.root) && real.is_file() && is_served_type(&real) => Ok(real),
        Ok(real) if real.starts_with(&site.root) && real.is_file() => Err(Response::status(403)),
        Ok(_) => Err(Response::status(404)),
        Err(_) => Err(Response::status(404)),
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
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let host = format!("Host: 127.0.0.1:{port}\r\n");
        raw_request(port, &format!("{method} {path} HTTP/1.1\r\n{host}Connection: close\r\n{extra}\r\n"))
    }

    /// Sends `head` as it is and reads the reply; a server that does not answer within the
    /// read timeout fails the test instead of hanging it.
    fn raw_request(port: u16, head: &str) -> Reply {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
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
    fn status_for_takes_the_servers_steps_without_a_socket() {
        let (dir, model) = site();
        let site = Site::new(&dir.path().join("www"), Some(&model)).unwrap();
        let limits = Limits::default();
        let status = |head: &str| status_for(&site, 8080, head.as_bytes(), &limits);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: localhost:8080\r\n"), None);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"), Some((200, true)));
        assert_eq!(
            status("GET /model.gguf HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n"),
            Some((200, false))
        );
        assert_eq!(status("GET / HTTP/1.1\r\nHost: evil.example:8080\r\n\r\n"), Some((421, false)));
        assert_eq!(status("GET /../Cargo.toml HTTP/1.1\r\nHost: localhost:8080\r\n\r\n").map(|s| s.0), Some(400));
        assert_eq!(status("GET /notes.csv HTTP/1.1\r\nHost: localhost:8080\r\n\r\n").map(|s| s.0), Some(403));
        assert_eq!(status("\x01\x02 nonsense\r\n\r\n"), Some((400, false)));
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(limits.max_head_bytes));
        assert_eq!(status(&long), Some((431, false)));
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
        assert!(is_served_type(Path::new("a/b.WASM")) && is_served_type(Path::new("app.mjs")));
        for data in ["notes.csv", "docs.jsonl", "a.tsv", "b.txt", "package.json", "index.d.ts", "LICENSE"] {
            assert!(!is_served_type(Path::new(data)), "{data}");
        }
    }

    #[test]
    fn answers_only_to_its_own_host_names() {
        let (dir, _) = site();
        let running = start(Site::new(&dir.path().join("www"), None).unwrap(), 0).unwrap();
        let port = running.port();
        let get = |host: &str| raw_request(port, &format!("GET / HTTP/1.1\r\n{host}Connection: close\r\n\r\n"));
        for host in [format!("localhost:{port}"), format!("LOCALHOST:{port}"), format!("[::1]:{port}")] {
            assert_eq!(get(&format!("Host: {host}\r\n")).status, 200, "{host}");
        }
        // A rebinding page's own name, this machine on another port, no Host, two Hosts.
        for host in [
            format!("Host: rebind.example:{port}\r\n"),
            "Host: rebind.example\r\n".to_string(),
            format!("Host: 127.0.0.1:{}\r\n", port.wrapping_add(1)),
            "Host: 127.0.0.1\r\n".to_string(),
            String::new(),
            format!("Host: 127.0.0.1:{port}\r\nHost: rebind.example\r\n"),
        ] {
            let reply = get(&host);
            assert_eq!(reply.status, 421, "{host:?}");
            assert!(!reply.body.starts_with(b"<!doctype"), "{host:?} got the page");
        }
        // HTTP/1.0 has no Host to check.
        assert_eq!(raw_request(port, "GET / HTTP/1.0\r\n\r\n").status, 200);
    }

    #[test]
    fn serves_only_the_page_file_types() {
        let (dir, _) = site();
        let www = dir.path().join("www");
        for data in ["notes.csv", "docs.jsonl", "notes.tsv", "notes.txt", "package.json", "README"] {
            std::fs::write(www.join(data), "sentinel note text").unwrap();
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(www.join("notes.csv"), www.join("notes.js")).unwrap();
        let running = start(Site::new(&www, None).unwrap(), 0).unwrap();
        let port = running.port();
        for path in [
            "/notes.csv",
            "/docs.jsonl",
            "/notes.tsv",
            "/notes.txt",
            "/package.json",
            "/README",
            "/NOTES.CSV",
            "/notes.js",
        ] {
            let reply = request(port, "GET", path, "");
            assert!(reply.status == 403 || reply.status == 404, "{path}: {}", reply.status);
            assert!(!String::from_utf8_lossy(&reply.body).contains("sentinel"), "{path} was served");
        }
        assert_eq!(request(port, "GET", "/missing.csv", "").status, 403);
        assert_eq!(request(port, "GET", "/app.js", "").status, 200);
    }

    #[test]
    fn refuses_bodies_and_oversized_heads_and_goes_on() {
        let (dir, _) = site();
        let running = start(Site::new(&dir.path().join("www"), None).unwrap(), 0).unwrap();
        let port = running.port();
        assert_eq!(request(port, "GET", "/", "Content-Length: 5\r\n").status, 413);
        assert_eq!(request(port, "GET", "/", "Transfer-Encoding: chunked\r\n").status, 413);
        let many: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(request(port, "GET", "/", &many).status, 431);

        // A 1 MB header: refused once the head passes the limit, without reading the rest.
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let big = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
        // The server stops reading, so the rest may never be taken: write from another thread.
        let sending = std::thread::spawn(move || {
            let _ = writer.write_all(big.as_bytes());
        });
        let mut raw = Vec::new();
        // The refusal, or a reset if the server closed with the rest unread.
        let _ = stream.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        assert!(raw.is_empty() || text.starts_with("HTTP/1.1 431 "), "{}", text.lines().next().unwrap_or(""));
        assert!(!text.contains("<!doctype"), "a 1 MB header was answered with the page");
        drop(stream);
        let _ = sending.join();
        assert_eq!(request(port, "GET", "/", "").status, 200);
    }

    #[test]
    fn clients_that_never_read_do_not_stall_the_others() {
        let (dir, _) = site();
        // Far more than the socket buffers hold, so writing to a client that does not read
        // blocks. Sparse: no disk is used.
        let model = dir.path().join("big.gguf");
        let mut file = File::create(&model).unwrap();
        file.write_all(b"GGUF").unwrap();
        file.set_len(512 << 20).unwrap();
        let limits = Limits { write_timeout: Duration::from_secs(1), workers: 4, ..Limits::default() };
        let running = start_with(Site::new(&dir.path().join("www"), Some(&model)).unwrap(), 0, limits).unwrap();
        let port = running.port();
        let stalled: Vec<TcpStream> = (0..limits.workers * 2)
            .map(|_| {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                write!(stream, "GET {MODEL_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
                stream
            })
            .collect();
        // Answered once the stalled downloads are dropped (the read timeout fails a server
        // that never drops them).
        let index = request(port, "GET", "/", "");
        assert_eq!(index.status, 200);
        assert_eq!(index.body, b"<!doctype html><title>t</title>");
        drop(stalled);
    }
}
