//! `--base <hub id>` against a local stand-in for the Hugging Face hub: files are downloaded
//! into a temporary cache the way hf-hub does it, load as a checkpoint, are found again with
//! the server gone, and missing files, unknown repos and dead endpoints give errors that
//! say which repo, file and endpoint. Never touches the real cache nor the network.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bedside::hub::{resolve_base, HubError, HubOptions};
use bedside_runtime::checkpoint::Checkpoint;
use bedside_runtime::pipeline::pool::Pooling;
use sha2::{Digest, Sha256};

/// The commit every repo of the fake hub is at.
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny-safetensors")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap()
}

type Files = BTreeMap<String, Vec<u8>>;

/// What a repo of the fake hub answers.
#[derive(Clone)]
enum FakeRepo {
    Files(Files),
    /// 401 with `X-Error-Code: GatedRepo`, as the hub answers for a gated repo without a token.
    Gated,
    /// The files, with one thing a hostile mirror changes.
    Tampered(Files, Tamper),
}

/// What a hostile or broken mirror sends instead of the truth.
#[derive(Clone)]
enum Tamper {
    /// This `X-Repo-Commit` on every file.
    Commit(String),
    /// This `ETag` on every file that is not LFS.
    Etag(String),
    /// This `X-Linked-Etag` on model.safetensors (the LFS file).
    LinkedEtag(String),
    /// This `X-Linked-Size` on model.safetensors.
    LinkedSize(String),
    /// These bytes from the CDN instead of model.safetensors (the headers stay true).
    CdnBytes(Vec<u8>),
}

/// A minimal Hugging Face hub: `GET /{owner}/{name}/resolve/{revision}/{file}` with the
/// headers hf-hub reads (`x-repo-commit`, `etag`, `content-range`), Range requests, and
/// model.safetensors sent through a redirect to a "CDN" path as the hub does for LFS files.
struct FakeHub {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    fn start(repos: HashMap<String, FakeRepo>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, log) = (stop.clone(), log.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        // One connection at a time is enough: hf-hub downloads one file at a time.
                        let _ = serve(stream, addr, &repos, &log);
                    }
                }
            })
        };
        Self { addr, stop, log, thread: Some(thread) }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A 40-hex-digit ETag, as the hub's git blob ids are.
fn etag(bytes: &[u8]) -> String {
    sha256(bytes)[..40].to_string()
}

struct Reply {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn error(status: &'static str, code: &str) -> Self {
        Reply {
            status,
            headers: vec![("X-Error-Code".into(), code.into()), ("X-Error-Message".into(), code.into())],
            body: Vec::new(),
        }
    }

    /// `bytes`, or the part a `Range: bytes=a-b` / `bytes=a-` header asks for.
    fn content(bytes: &[u8], range: Option<&str>, mut headers: Vec<(String, String)>) -> Self {
        let len = bytes.len();
        let parsed = range.and_then(|r| {
            let (start, end) = r.trim().strip_prefix("bytes=")?.split_once('-')?;
            let start: usize = start.parse().ok()?;
            let end: usize = if end.is_empty() { len.saturating_sub(1) } else { end.parse().ok()? };
            Some((start, end.min(len.saturating_sub(1))))
        });
        match parsed {
            Some((start, end)) if start < len => {
                headers.push(("Content-Range".into(), format!("bytes {start}-{end}/{len}")));
                Reply { status: "206 Partial Content", headers, body: bytes[start..=end].to_vec() }
            }
            _ => Reply { status: "200 OK", headers, body: bytes.to_vec() },
        }
    }
}

fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    repos: &HashMap<String, FakeRepo>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    log.lock().unwrap().push(path.clone());
    let reply = route(&path, range.as_deref(), addr, repos);

    let mut out = stream;
    let mut head =
        format!("HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n", reply.status, reply.body.len());
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(&reply.body)?;
    out.flush()
}

fn route(path: &str, range: Option<&str>, addr: SocketAddr, repos: &HashMap<String, FakeRepo>) -> Reply {
    // The "CDN" an LFS file is redirected to: /cdn/{owner}/{name}/{file}.
    if let Some(rest) = path.strip_prefix("/cdn/") {
        let mut parts = rest.splitn(3, '/');
        let (owner, name, file) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        return match repos.get(&format!("{owner}/{name}")) {
            Some(FakeRepo::Tampered(_, Tamper::CdnBytes(bytes))) => Reply::content(bytes, range, Vec::new()),
            Some(FakeRepo::Files(files) | FakeRepo::Tampered(files, _)) if files.contains_key(file) => {
                Reply::content(&files[file], range, Vec::new())
            }
            _ => Reply::error("404 Not Found", "EntryNotFound"),
        };
    }
    // /{owner}/{name}/resolve/{revision}/{file...}
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if parts.len() != 5 || parts[2] != "resolve" {
        return Reply::error("404 Not Found", "RepoNotFound");
    }
    let (repo_id, revision, file) = (format!("{}/{}", parts[0], parts[1]), parts[3], parts[4]);
    let (files, tamper) = match repos.get(&repo_id) {
        None => return Reply::error("404 Not Found", "RepoNotFound"),
        Some(FakeRepo::Gated) => return Reply::error("401 Unauthorized", "GatedRepo"),
        Some(FakeRepo::Files(files)) => (files, None),
        Some(FakeRepo::Tampered(files, tamper)) => (files, Some(tamper)),
    };
    let commit = match tamper {
        Some(Tamper::Commit(commit)) => commit.as_str(),
        _ => COMMIT,
    };
    if revision != "main" && revision != COMMIT {
        return Reply::error("404 Not Found", "RevisionNotFound");
    }
    let Some(bytes) = files.get(file) else {
        let mut reply = Reply::error("404 Not Found", "EntryNotFound");
        reply.headers.push(("X-Repo-Commit".into(), COMMIT.into()));
        return reply;
    };
    let etag = match tamper {
        Some(Tamper::Etag(etag)) => etag.clone(),
        _ => format!("\"{}\"", etag(bytes)),
    };
    let headers = vec![("X-Repo-Commit".into(), commit.into()), ("ETag".into(), etag)];
    if file == "model.safetensors" {
        // Like the hub's LFS files: a redirect, the SHA-256 in X-Linked-Etag.
        let linked_etag = match tamper {
            Some(Tamper::LinkedEtag(etag)) => etag.clone(),
            _ => format!("\"{}\"", sha256(bytes)),
        };
        let linked_size = match tamper {
            Some(Tamper::LinkedSize(size)) => size.clone(),
            _ => bytes.len().to_string(),
        };
        let mut headers = headers;
        headers.push(("X-Linked-Etag".into(), linked_etag));
        headers.push(("X-Linked-Size".into(), linked_size));
        headers.push(("Location".into(), format!("http://{addr}/cdn/{repo_id}/{file}")));
        return Reply { status: "302 Found", headers, body: Vec::new() };
    }
    Reply::content(bytes, range, headers)
}

/// The fixture's files, as a repo.
fn tiny_bert() -> Files {
    ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
        .into_iter()
        .map(|f| (f.to_string(), fixture(f)))
        .collect()
}

fn without(mut files: Files, names: &[&str]) -> Files {
    for name in names {
        files.remove(*name);
    }
    files
}

fn options(endpoint: &str, cache: &Path) -> HubOptions {
    HubOptions {
        endpoint: Some(endpoint.to_string()),
        revision: None,
        cache_dir: Some(cache.to_path_buf()),
        // Never send a developer's own token to the test server.
        token: Some("test-token".into()),
    }
}

/// An endpoint nothing listens on: a port that was just free.
fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn hub_with(repos: &[(&str, FakeRepo)]) -> FakeHub {
    FakeHub::start(repos.iter().map(|(id, r)| (id.to_string(), r.clone())).collect())
}

#[test]
fn downloads_a_hub_id_into_the_cache_and_loads_it() {
    let hub = hub_with(&[("test-org/tiny-bert", FakeRepo::Files(tiny_bert()))]);
    let cache = tempfile::tempdir().unwrap();
    let dir = resolve_base("test-org/tiny-bert", &options(&hub.endpoint(), cache.path())).unwrap();

    let repo_dir = cache.path().join("models--test-org--tiny-bert");
    assert_eq!(dir, repo_dir.join("snapshots").join(COMMIT));
    assert!(dir.is_dir());
    for file in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        assert_eq!(std::fs::read(dir.join(file)).unwrap(), fixture(file), "{file}");
    }
    // tokenizer.json is there, so vocab.txt is not needed.
    assert!(!dir.join("vocab.txt").exists());
    // The hub cache layout: the branch points at the commit; no stray ref named after it.
    assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap().trim(), COMMIT);
    assert!(!repo_dir.join("refs").join(COMMIT).exists());
    // Files the repo lacks are remembered as Python's huggingface_hub does.
    for absent in ["special_tokens_map.json", "modules.json", "sentence_bert_config.json"] {
        assert!(repo_dir.join(".no_exist").join(COMMIT).join(absent).is_file(), "{absent}");
    }
    // model.safetensors came through the redirect, at the commit config.json came from.
    let requests = hub.requests();
    assert!(requests.contains(&"/test-org/tiny-bert/resolve/main/config.json".to_string()), "{requests:?}");
    assert!(requests.contains(&format!("/test-org/tiny-bert/resolve/{COMMIT}/model.safetensors")), "{requests:?}");
    assert!(requests.contains(&"/cdn/test-org/tiny-bert/model.safetensors".to_string()), "{requests:?}");

    let checkpoint = Checkpoint::from_dir(&dir).unwrap();
    let reference = Checkpoint::from_dir(&fixture_dir()).unwrap();
    assert_eq!(checkpoint.config.hidden_size, reference.config.hidden_size);
    assert_eq!(checkpoint.tokenizer_json, reference.tokenizer_json);
}

#[test]
fn a_cached_model_resolves_without_the_server() {
    let hub = hub_with(&[("test-org/tiny-bert", FakeRepo::Files(tiny_bert()))]);
    let cache = tempfile::tempdir().unwrap();
    let endpoint = hub.endpoint();
    let first = resolve_base("test-org/tiny-bert", &options(&endpoint, cache.path())).unwrap();

    // Once cached, not a single request, even with the server up.
    let before = hub.requests().len();
    let again = resolve_base("test-org/tiny-bert", &options(&endpoint, cache.path())).unwrap();
    assert_eq!(again, first);
    assert_eq!(hub.requests().len(), before, "{:?}", &hub.requests()[before..]);

    // Server gone: the same endpoint, then another dead one.
    drop(hub);
    for endpoint in [endpoint, dead_endpoint()] {
        let dir = resolve_base("test-org/tiny-bert", &options(&endpoint, cache.path())).unwrap();
        assert_eq!(dir, first);
        Checkpoint::from_dir(&dir).unwrap();
    }
    // At the commit itself, too.
    let mut pinned = options(&dead_endpoint(), cache.path());
    pinned.revision = Some(COMMIT.into());
    assert_eq!(resolve_base("test-org/tiny-bert", &pinned).unwrap(), first);
}

#[test]
fn sentence_transformers_layout_and_vocab_only_tokenizer() {
    let mut files = without(tiny_bert(), &["tokenizer.json"]);
    files.insert(
        "modules.json".into(),
        br#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#
            .to_vec(),
    );
    files.insert(
        "1_Pooling/config.json".into(),
        br#"{"word_embedding_dimension": 32, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true}"#
            .to_vec(),
    );
    files.insert("sentence_bert_config.json".into(), br#"{"max_seq_length": 48, "do_lower_case": false}"#.to_vec());
    let hub = hub_with(&[("test-org/tiny-st", FakeRepo::Files(files.clone()))]);
    let cache = tempfile::tempdir().unwrap();
    let dir = resolve_base("test-org/tiny-st", &options(&hub.endpoint(), cache.path())).unwrap();

    for file in ["vocab.txt", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json"] {
        assert_eq!(std::fs::read(dir.join(file)).unwrap(), files[file], "{file}");
    }
    assert!(!dir.join("tokenizer.json").exists());
    let checkpoint = Checkpoint::from_dir(&dir).unwrap();
    assert_eq!(checkpoint.pooling, Some(Pooling::Mean));
    assert_eq!(checkpoint.max_seq_length, Some(48));
    assert!(checkpoint.tokenizer_json.contains("WordPiece"));

    // Offline too, tokenizer.json being known to be absent.
    drop(hub);
    assert_eq!(resolve_base("test-org/tiny-st", &options(&dead_endpoint(), cache.path())).unwrap(), dir);
}

#[test]
fn pytorch_weights_when_there_is_no_safetensors() {
    let mut files = without(tiny_bert(), &["model.safetensors"]);
    files.insert("pytorch_model.bin".into(), b"not really a pickle".to_vec());
    let hub = hub_with(&[("test-org/old-bert", FakeRepo::Files(files))]);
    let cache = tempfile::tempdir().unwrap();
    let dir = resolve_base("test-org/old-bert", &options(&hub.endpoint(), cache.path())).unwrap();
    assert_eq!(std::fs::read(dir.join("pytorch_model.bin")).unwrap(), b"not really a pickle");
    assert!(!dir.join("model.safetensors").exists());
    let marker = cache.path().join("models--test-org--old-bert/.no_exist").join(COMMIT).join("model.safetensors");
    assert!(marker.is_file());
}

#[test]
fn a_commit_revision_downloads_that_commit() {
    let hub = hub_with(&[("test-org/tiny-bert", FakeRepo::Files(tiny_bert()))]);
    let cache = tempfile::tempdir().unwrap();
    let mut pinned = options(&hub.endpoint(), cache.path());
    pinned.revision = Some(COMMIT.into());
    let dir = resolve_base("test-org/tiny-bert", &pinned).unwrap();
    let repo_dir = cache.path().join("models--test-org--tiny-bert");
    assert_eq!(dir, repo_dir.join("snapshots").join(COMMIT));
    assert!(hub.requests().iter().all(|r| !r.contains("/resolve/main/")), "{:?}", hub.requests());
    // No branch was asked for, and a commit needs no ref.
    assert!(!repo_dir.join("refs/main").exists());
    assert!(!repo_dir.join("refs").join(COMMIT).exists());
    Checkpoint::from_dir(&dir).unwrap();
}

/// Environment variables are process-wide, so `HF_HUB_OFFLINE` is tried in a child process
/// running [`offline_child`].
#[test]
fn hf_hub_offline_uses_the_cache_only() {
    let hub = hub_with(&[("test-org/tiny-bert", FakeRepo::Files(tiny_bert()))]);
    let cache = tempfile::tempdir().unwrap();
    let first = resolve_base("test-org/tiny-bert", &options(&hub.endpoint(), cache.path())).unwrap();
    let before = hub.requests().len();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "offline_child", "--nocapture", "--test-threads", "1"])
        .env("HF_HUB_OFFLINE", "1")
        .env("BEDSIDE_HUB_TEST_ENDPOINT", hub.endpoint())
        .env("BEDSIDE_HUB_TEST_CACHE", cache.path())
        .env("BEDSIDE_HUB_TEST_EXPECT", &first)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("offline child ran"), "{log}");
    assert_eq!(hub.requests().len(), before, "HF_HUB_OFFLINE still asked the server");
}

/// Only does something when started by [`hf_hub_offline_uses_the_cache_only`].
#[test]
fn offline_child() {
    let Ok(endpoint) = std::env::var("BEDSIDE_HUB_TEST_ENDPOINT") else {
        return;
    };
    let cache = PathBuf::from(std::env::var("BEDSIDE_HUB_TEST_CACHE").unwrap());
    let expect = PathBuf::from(std::env::var("BEDSIDE_HUB_TEST_EXPECT").unwrap());
    assert_eq!(resolve_base("test-org/tiny-bert", &options(&endpoint, &cache)).unwrap(), expect);
    let err = resolve_base("test-org/not-cached", &options(&endpoint, &cache)).unwrap_err();
    assert!(matches!(err, HubError::Offline { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("test-org/not-cached") && text.contains("HF_HUB_OFFLINE"), "{text}");
    println!("offline child ran");
}

fn message(error: HubError) -> String {
    error.to_string()
}

#[test]
fn missing_files_and_repos_name_repo_file_and_endpoint() {
    let hub = hub_with(&[
        ("test-org/no-weights", FakeRepo::Files(without(tiny_bert(), &["model.safetensors"]))),
        ("test-org/no-tokenizer", FakeRepo::Files(without(tiny_bert(), &["tokenizer.json", "vocab.txt"]))),
        ("test-org/no-config", FakeRepo::Files(without(tiny_bert(), &["config.json"]))),
        ("test-org/gated", FakeRepo::Gated),
    ]);
    let endpoint = hub.endpoint();
    let cache = tempfile::tempdir().unwrap();
    #[allow(clippy::result_large_err)] // resolve_base's own error type, as callers get it
    let resolve = |id: &str| resolve_base(id, &options(&endpoint, cache.path()));

    let err = resolve("test-org/no-weights").unwrap_err();
    assert!(matches!(err, HubError::MissingOneOf { what: "weights", .. }), "{err:?}");
    let text = message(err);
    for part in ["test-org/no-weights", "model.safetensors", "pytorch_model.bin", endpoint.as_str()] {
        assert!(text.contains(part), "{part} not in: {text}");
    }

    let text = message(resolve("test-org/no-tokenizer").unwrap_err());
    for part in ["test-org/no-tokenizer", "tokenizer.json", "vocab.txt", endpoint.as_str()] {
        assert!(text.contains(part), "{part} not in: {text}");
    }

    let err = resolve("test-org/no-config").unwrap_err();
    assert!(matches!(err, HubError::MissingFile { .. }), "{err:?}");
    let text = message(err);
    for part in ["test-org/no-config", "config.json", endpoint.as_str()] {
        assert!(text.contains(part), "{part} not in: {text}");
    }

    let err = resolve("test-org/nothing-here").unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { .. }), "{err:?}");
    let text = message(err);
    for part in ["test-org/nothing-here", "config.json", endpoint.as_str(), "not found"] {
        assert!(text.contains(part), "{part} not in: {text}");
    }

    let err = resolve("test-org/gated").unwrap_err();
    assert!(matches!(err, HubError::AccessDenied { status: 401, gated: true, .. }), "{err:?}");
    assert!(message(err).contains("HF_TOKEN"));

    let mut tagged = options(&endpoint, cache.path());
    tagged.revision = Some("v9".into());
    let err = resolve_base("test-org/no-weights", &tagged).unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }), "{err:?}");
    assert!(message(err).contains("v9"));
}

#[test]
fn a_dead_endpoint_with_an_empty_cache_is_named() {
    let cache = tempfile::tempdir().unwrap();
    let endpoint = dead_endpoint();
    let err = resolve_base("dmis-lab/biobert-v1.1", &options(&endpoint, cache.path())).unwrap_err();
    assert!(err.is_offline(), "{err:?}");
    let text = message(err);
    for part in ["dmis-lab/biobert-v1.1", "config.json", endpoint.as_str(), "local model directory"] {
        assert!(text.contains(part), "{part} not in: {text}");
    }
}

#[test]
fn local_paths_are_not_hub_ids() {
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&dead_endpoint(), cache.path());

    let dir = fixture_dir();
    assert_eq!(resolve_base(dir.to_str().unwrap(), &opts).unwrap(), dir);

    for missing in ["./nope", "/definitely/not/here", "models/fixtures/nope"] {
        let err = resolve_base(missing, &opts).unwrap_err();
        assert!(matches!(err, HubError::LocalPath { .. }), "{missing}: {err:?}");
        assert!(message(err).contains(missing), "{missing}");
    }

    let file = dir.join("config.json");
    let err = resolve_base(file.to_str().unwrap(), &opts).unwrap_err();
    assert!(matches!(err, HubError::LocalPath { .. }), "{err:?}");
    let text = message(err);
    assert!(text.contains("config.json") && text.contains("not a directory"), "{text}");

    let err = resolve_base("not a hub id", &opts).unwrap_err();
    assert!(matches!(err, HubError::InvalidId { .. }), "{err:?}");

    // Nothing was downloaded or created for any of these.
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    found
}

#[test]
fn a_mirror_sending_paths_as_commit_or_etag_writes_nothing_outside_the_cache() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("planted");
    let absolute = target.display().to_string();
    let cases = [
        ("commit-absolute", Tamper::Commit(absolute.clone()), "X-Repo-Commit"),
        ("commit-dotdot", Tamper::Commit("../../../../planted".into()), "X-Repo-Commit"),
        ("etag-absolute", Tamper::Etag(format!("\"{absolute}\"")), "ETag"),
        ("etag-dotdot", Tamper::Etag("\"../../../planted\"".into()), "ETag"),
        ("etag-short", Tamper::Etag("\"abc123\"".into()), "ETag"),
        ("linked-absolute", Tamper::LinkedEtag(absolute.clone()), "X-Linked-Etag"),
        ("linked-dotdot", Tamper::LinkedEtag("../../planted".into()), "X-Linked-Etag"),
    ];
    let hub = FakeHub::start(
        cases
            .iter()
            .map(|(name, tamper, _)| (format!("test-org/{name}"), FakeRepo::Tampered(tiny_bert(), tamper.clone())))
            .collect(),
    );
    for (name, _, header) in &cases {
        let cache = tempfile::tempdir().unwrap();
        let id = format!("test-org/{name}");
        let err = resolve_base(&id, &options(&hub.endpoint(), cache.path())).unwrap_err();
        assert!(matches!(err, HubError::BadHeader { .. }), "{name}: {err:?}");
        let text = message(err);
        assert!(text.contains(&id) && text.contains(header), "{name}: {text}");
        assert!(!text.contains(&absolute), "{name} echoes the header: {text}");
        assert!(files_under(outside.path()).is_empty(), "{name} wrote {:?}", files_under(outside.path()));
        // Nothing of the refused file in the cache either (config.json came first when the
        // tampered header is on model.safetensors).
        let kept = files_under(cache.path());
        assert!(kept.iter().all(|p| !p.ends_with("model.safetensors")), "{name} kept {kept:?}");
        assert!(kept.iter().all(|p| !p.to_string_lossy().contains("planted")), "{name} kept {kept:?}");
    }
}

#[test]
fn bytes_that_do_not_match_the_announced_sha256_are_refused() {
    let mut forged = fixture("model.safetensors");
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let hub = hub_with(&[("test-org/forged", FakeRepo::Tampered(tiny_bert(), Tamper::CdnBytes(forged)))]);
    let cache = tempfile::tempdir().unwrap();
    let err = resolve_base("test-org/forged", &options(&hub.endpoint(), cache.path())).unwrap_err();
    assert!(matches!(err, HubError::ChecksumMismatch { .. }), "{err:?}");
    let text = message(err);
    let sha = sha256(&fixture("model.safetensors"));
    for part in ["test-org/forged", "model.safetensors", sha.as_str()] {
        assert!(text.contains(part), "{part} not in: {text}");
    }
    let kept = files_under(cache.path());
    assert!(kept.iter().all(|p| !p.ends_with("model.safetensors") && !p.ends_with(&sha)), "{kept:?}");
    assert!(kept.iter().all(|p| !p.to_string_lossy().ends_with(".incomplete")), "{kept:?}");
}

#[test]
fn a_size_other_than_announced_is_refused() {
    let weights = fixture("model.safetensors");
    let mut longer = weights.clone();
    longer.extend_from_slice(b"trailing");
    let hub = hub_with(&[
        ("test-org/size-header", FakeRepo::Tampered(tiny_bert(), Tamper::LinkedSize((weights.len() + 10).to_string()))),
        ("test-org/longer-body", FakeRepo::Tampered(tiny_bert(), Tamper::CdnBytes(longer))),
        ("test-org/no-size", FakeRepo::Tampered(tiny_bert(), Tamper::LinkedSize("many".into()))),
    ]);
    for id in ["test-org/size-header", "test-org/longer-body"] {
        let cache = tempfile::tempdir().unwrap();
        let err = resolve_base(id, &options(&hub.endpoint(), cache.path())).unwrap_err();
        assert!(matches!(err, HubError::SizeMismatch { .. }), "{id}: {err:?}");
        let text = message(err);
        assert!(text.contains(id) && text.contains("model.safetensors"), "{text}");
        let kept = files_under(cache.path());
        assert!(kept.iter().all(|p| !p.ends_with("model.safetensors")), "{id} kept {kept:?}");
    }
    let cache = tempfile::tempdir().unwrap();
    let err = resolve_base("test-org/no-size", &options(&hub.endpoint(), cache.path())).unwrap_err();
    assert!(matches!(err, HubError::BadHeader { header: "X-Linked-Size", .. }), "{err:?}");
}
