//! `--base`: a local Hugging Face model directory, or a hub id (`dmis-lab/biobert-v1.1`,
//! `sentence-transformers/all-MiniLM-L6-v2`) whose files are downloaded into the usual
//! Hugging Face cache and read from there, like `transformers` and `sentence-transformers`
//! do.
//!
//! Only the files [`bedside_runtime::checkpoint::Checkpoint::from_dir`] reads are fetched:
//! `config.json`; the weights (`model.safetensors`, else `pytorch_model.bin`); the
//! tokenizer (`tokenizer.json`, else `vocab.txt`); and, where the repo has them,
//! `tokenizer_config.json`, `special_tokens_map.json`, `modules.json`,
//! `sentence_bert_config.json` and the pooling settings `modules.json` points to
//! (`1_Pooling/config.json`).
//!
//! The cache is the one `huggingface_hub` (Python) and the `hf-hub` crate share:
//! `<cache>/models--owner--name/{blobs,refs,snapshots}/`, so a model downloaded by either
//! is found here and vice versa. A file the repo lacks is remembered the way Python does,
//! as an empty `.no_exist/<commit>/<file>`, so a second resolve needs no network at all:
//! once a model is cached, `--base owner/name` works offline. The cache is trusted as it
//! is: a newer commit on the hub is not looked for while the cached snapshot is complete
//! (pass `revision` or delete the cache entry to update).
//!
//! Downloads use a blocking ureq client (no async runtime) and write the cache layout
//! themselves rather than through hf-hub, which builds paths from the server's `ETag` and
//! `X-Repo-Commit` headers unchecked and checks neither size nor hash. Here the commit must
//! be 40 hex digits and the blob name 40 or 64 before any path is made of them; every path
//! must lie in the cache; a file goes to `blobs/<etag>` only after its size (`X-Linked-Size`,
//! else `Content-Length`) and, for LFS files, its SHA-256 (`X-Linked-Etag`) matched, written
//! to a temporary file, fsynced and renamed in.

use std::io::{IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The hub's address when neither [`HubOptions::endpoint`] nor `HF_ENDPOINT` says.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The branch, tag or commit used when [`HubOptions::revision`] is not set.
pub const DEFAULT_REVISION: &str = "main";

const WEIGHTS: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];
const TOKENIZER: [&str; 2] = ["tokenizer.json", "vocab.txt"];
const OPTIONAL: [&str; 4] =
    ["tokenizer_config.json", "special_tokens_map.json", "modules.json", "sentence_bert_config.json"];

/// Where and how to download a hub id. Every field is optional; `Default` gives the usual
/// Hugging Face behaviour.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Hub address, e.g. a mirror. Default: env `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Branch, tag or commit hash. Default: `main`.
    pub revision: Option<String>,
    /// The hub cache (the folder holding `models--owner--name/`). Default: env
    /// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// Access token for private or gated repos. Default: env `HF_TOKEN`, else the token file
    /// `huggingface-cli login` writes (`$HF_HOME/token`).
    pub token: Option<String>,
}

/// Why `--base` could not be turned into a model directory.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A local path that cannot be used: it does not exist or is not a directory.
    #[error(
        "--base {}: {reason}; expected a Hugging Face model directory or a hub id such as \
         dmis-lab/biobert-v1.1",
        path.display()
    )]
    LocalPath { path: PathBuf, reason: String },

    #[error(
        "--base {base:?} is neither an existing directory nor a hub id (owner/name, e.g. \
         dmis-lab/biobert-v1.1): {reason}"
    )]
    InvalidId { base: String, reason: String },

    #[error(
        "cannot tell where the Hugging Face cache is (no HF_HUB_CACHE, HF_HOME or home \
         directory): set HF_HOME or pass a cache directory"
    )]
    NoCacheDir,

    #[error("cannot set up a download client for {endpoint}: {message}")]
    Client { endpoint: String, message: String },

    /// The endpoint could not be reached (connection refused, DNS, proxy) and the file is
    /// not in the cache.
    #[error(
        "could not download {file} of {repo} from {endpoint}: {message}. The hub is \
         unreachable and {file} is not in the cache ({}): check the network, the endpoint \
         (--hub-endpoint / HF_ENDPOINT), or pass a local model directory as --base",
        cache.display()
    )]
    Unreachable { repo: String, file: String, endpoint: String, cache: PathBuf, message: String },

    /// `HF_HUB_OFFLINE` is set and a needed file is not cached.
    #[error(
        "{file} of {repo} is not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set, so \
         {endpoint} was not asked: unset HF_HUB_OFFLINE or pass a local model directory as --base",
        cache.display()
    )]
    Offline { repo: String, file: String, endpoint: String, cache: PathBuf },

    #[error(
        "could not download {file} of {repo} from {endpoint}: repository not found (check the \
         id; a private or gated repo also needs a token: set HF_TOKEN)"
    )]
    RepoNotFound { repo: String, file: String, endpoint: String },

    #[error("could not download {file} of {repo} from {endpoint}: revision {revision:?} not found")]
    RevisionNotFound { repo: String, file: String, endpoint: String, revision: String },

    #[error(
        "could not download {file} of {repo} from {endpoint}: access denied (HTTP {status}{}); \
         the repo is private or gated: accept its terms on the hub and set HF_TOKEN",
        if *gated { ", gated repo" } else { "" }
    )]
    AccessDenied { repo: String, file: String, endpoint: String, status: u16, gated: bool },

    /// A required file the repo does not have.
    #[error(
        "could not download {file} of {repo} from {endpoint}: the repo has no {file} at \
         revision {revision}, so it is not a Hugging Face BERT checkpoint"
    )]
    MissingFile { repo: String, file: String, endpoint: String, revision: String },

    /// None of the alternatives for the weights or the tokenizer exists.
    #[error(
        "could not download the {what} of {repo} from {endpoint}: the repo has neither {} at \
         revision {revision}",
        files.join(" nor ")
    )]
    MissingOneOf { repo: String, what: &'static str, files: Vec<String>, endpoint: String, revision: String },

    /// Any other failure of a download (server error, connection lost, disk).
    #[error("could not download {file} of {repo} from {endpoint}: {message}")]
    Download { repo: String, file: String, endpoint: String, message: String },

    /// `revision` cannot name a ref file in the cache.
    #[error("revision {revision:?} of {repo} is not a branch, tag or commit name (no `..`, no leading `/`)")]
    InvalidRevision { repo: String, revision: String },

    /// A header the cache paths or checks are made from is missing or malformed; nothing was
    /// written.
    #[error(
        "could not download {file} of {repo} from {endpoint}: the {header} header {problem}; \
         refused before anything was written"
    )]
    BadHeader { repo: String, file: String, endpoint: String, header: &'static str, problem: String },

    /// A cache path that would lie outside the cache directory (through a symlink in it).
    #[error("could not download {file} of {repo}: {} lies outside the Hugging Face cache {}", path.display(), cache.display())]
    OutsideCache { repo: String, file: String, path: PathBuf, cache: PathBuf },

    /// The bytes received are not as many as the hub announced; nothing was kept.
    #[error(
        "could not download {file} of {repo} from {endpoint}: the hub announced {expected} bytes \
         and sent {}; nothing was kept",
        if received > expected { "more".to_string() } else { received.to_string() }
    )]
    SizeMismatch { repo: String, file: String, endpoint: String, expected: u64, received: u64 },

    /// The bytes received do not have the SHA-256 the hub announced; nothing was kept.
    #[error(
        "could not download {file} of {repo} from {endpoint}: its SHA-256 is {actual}, the hub \
         announced {expected}; nothing was kept"
    )]
    ChecksumMismatch { repo: String, file: String, endpoint: String, expected: String, actual: String },
}

impl HubError {
    /// The hub could not be reached, or was not asked (`HF_HUB_OFFLINE`).
    pub fn is_offline(&self) -> bool {
        matches!(self, HubError::Unreachable { .. } | HubError::Offline { .. })
    }
}

/// `--base` → a directory [`Checkpoint::from_dir`](bedside_runtime::checkpoint::Checkpoint::from_dir)
/// can read.
///
/// - An existing directory is returned as is (it wins over a hub id of the same name).
/// - Something that is a path (exists as a file, or starts with `.`, `/`, `~`, or has more
///   than one `/`) but no directory: [`HubError::LocalPath`].
/// - `owner/name` or `name`: the model's files are taken from the cache, downloading those
///   missing, and the snapshot directory holding them is returned.
pub fn resolve_base(base: &str, options: &HubOptions) -> Result<PathBuf, HubError> {
    let path = Path::new(base);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        return Err(HubError::LocalPath { path: path.to_path_buf(), reason: "not a directory".into() });
    }
    if looks_like_path(base) {
        return Err(HubError::LocalPath { path: path.to_path_buf(), reason: "no such directory".into() });
    }
    if let Err(reason) = check_repo_id(base) {
        if base.contains('/') {
            return Err(HubError::LocalPath {
                path: path.to_path_buf(),
                reason: format!("no such directory, nor a hub id ({reason})"),
            });
        }
        return Err(HubError::InvalidId { base: base.to_string(), reason });
    }
    Hub::new(base, options)?.snapshot()
}

/// Starts like a path, or has a path's shape that a hub id cannot have.
fn looks_like_path(base: &str) -> bool {
    let bytes = base.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    base.is_empty()
        || base.starts_with(['.', '/', '~', '\\'])
        || base.contains('\\')
        || base.ends_with('/')
        || drive
        || base.matches('/').count() > 1
}

/// The hub's rule for ids: `name` or `owner/name`, each part 1 to 96 of `[A-Za-z0-9_.-]`,
/// no `--` or `..`, not starting or ending with `-` or `.`.
fn check_repo_id(id: &str) -> Result<(), String> {
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() > 2 {
        return Err("a hub id has at most one `/`".into());
    }
    for part in parts {
        if part.is_empty() || part.len() > 96 {
            return Err("each part must be 1 to 96 characters".into());
        }
        if let Some(c) = part.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
            return Err(format!("{c:?} is not allowed (only letters, digits, `_`, `-`, `.`)"));
        }
        if part.contains("--") || part.contains("..") {
            return Err("`--` and `..` are not allowed".into());
        }
        if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
            return Err("a part cannot start or end with `-` or `.`".into());
        }
    }
    Ok(())
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn env_flag(name: &str) -> bool {
    env_nonempty(name).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
fn hf_home() -> Option<PathBuf> {
    if let Some(home) = env_nonempty("HF_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(xdg) = env_nonempty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("huggingface"));
    }
    let home = env_nonempty("HOME").or_else(|| env_nonempty("USERPROFILE"))?;
    Some(PathBuf::from(home).join(".cache").join("huggingface"))
}

fn default_cache_dir() -> Option<PathBuf> {
    env_nonempty("HF_HUB_CACHE").map(PathBuf::from).or_else(|| Some(hf_home()?.join("hub")))
}

/// `HF_TOKEN`, else the token file (`HF_TOKEN_PATH`, else `$HF_HOME/token`).
fn default_token() -> Option<String> {
    if let Some(token) = env_nonempty("HF_TOKEN").or_else(|| env_nonempty("HUGGING_FACE_HUB_TOKEN")) {
        return Some(token);
    }
    let path = env_nonempty("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| Some(hf_home()?.join("token")))?;
    let token = std::fs::read_to_string(path).ok()?;
    Some(token.trim().to_string()).filter(|t| !t.is_empty())
}

/// A 40-hex-digit commit hash, as opposed to a branch or tag.
fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A relative path with plain components only (no `..`, no root), as a repo file name must be.
fn is_plain_relative(file: &str) -> bool {
    !file.is_empty() && Path::new(file).components().all(|c| matches!(c, Component::Normal(_)))
}

/// Why one file could not be had.
enum Failure {
    /// The repo exists but has no such file (HTTP 404 / `EntryNotFound`).
    NotFound,
    /// Boxed: the error is large, and the common path returns `Ok`.
    Error(Box<HubError>),
}

impl From<HubError> for Failure {
    fn from(error: HubError) -> Self {
        Failure::Error(Box::new(error))
    }
}

/// What the hub says about one file, checked before anything is written.
struct Remote {
    /// 40 hex digits.
    commit: String,
    /// The blob's name: 40 or 64 hex digits (the SHA-256 for LFS files).
    etag: String,
    size: u64,
    /// For LFS files, the SHA-256 the bytes must have.
    sha256: Option<String>,
}

/// Redirects followed on the hub itself (a renamed repo) and on the CDN.
const MAX_REDIRECTS: u32 = 5;
/// Files larger than this show a progress bar on a terminal.
const PROGRESS_FROM_BYTES: u64 = 1 << 20;

/// One repo at one revision in one cache.
struct Hub {
    repo_id: String,
    revision: String,
    endpoint: String,
    cache_dir: PathBuf,
    /// `<cache>/models--owner--name`.
    repo_dir: PathBuf,
    offline: bool,
    token: Option<String>,
    /// Follows no redirect: the hub's redirect carries the LFS headers.
    hub_agent: ureq::Agent,
    /// For the CDN an LFS file is redirected to.
    cdn_agent: ureq::Agent,
}

impl Hub {
    fn new(repo_id: &str, options: &HubOptions) -> Result<Self, HubError> {
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| env_nonempty("HF_ENDPOINT"))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let revision = options.revision.clone().unwrap_or_else(|| DEFAULT_REVISION.to_string());
        if !is_plain_relative(&revision) {
            return Err(HubError::InvalidRevision { repo: repo_id.to_string(), revision });
        }
        let cache_dir = options.cache_dir.clone().or_else(default_cache_dir).ok_or(HubError::NoCacheDir)?;
        let token = options.token.clone().or_else(default_token);
        let repo_dir = cache_dir.join(format!("models--{}", repo_id.replace('/', "--")));
        let agent = |redirects: u32| {
            ureq::AgentBuilder::new()
                .redirects(redirects)
                .timeout_connect(Duration::from_secs(30))
                .timeout_read(Duration::from_secs(60))
                .user_agent(concat!("bedside/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Ok(Self {
            repo_id: repo_id.to_string(),
            revision,
            endpoint,
            cache_dir,
            repo_dir,
            offline: env_flag("HF_HUB_OFFLINE"),
            token,
            hub_agent: agent(0),
            cdn_agent: agent(MAX_REDIRECTS),
        })
    }

    /// The cached snapshot of `self.revision`, if the cache has one.
    fn cached_snapshot(&self) -> Option<PathBuf> {
        let commit = if is_commit_hash(&self.revision) {
            self.revision.clone()
        } else {
            std::fs::read_to_string(self.repo_dir.join("refs").join(&self.revision)).ok()?.trim().to_string()
        };
        if !is_commit_hash(&commit) {
            return None;
        }
        let dir = self.repo_dir.join("snapshots").join(commit);
        dir.is_dir().then_some(dir)
    }

    fn download_error(&self, file: &str, message: String) -> HubError {
        HubError::Download {
            repo: self.repo_id.clone(),
            file: file.to_string(),
            endpoint: self.endpoint.clone(),
            message,
        }
    }

    fn bad_header(&self, file: &str, header: &'static str, problem: String) -> HubError {
        HubError::BadHeader {
            repo: self.repo_id.clone(),
            file: file.to_string(),
            endpoint: self.endpoint.clone(),
            header,
            problem,
        }
    }

    /// Downloads `file` at `revision` into the cache; returns the commit it came from and
    /// its path in that commit's snapshot. With `expect`, another commit is refused before
    /// anything is written.
    fn download(&self, revision: &str, file: &str, expect: Option<&str>) -> Result<(String, PathBuf), Failure> {
        if self.offline {
            return Err(Failure::from(HubError::Offline {
                repo: self.repo_id.clone(),
                file: file.to_string(),
                endpoint: self.endpoint.clone(),
                cache: self.cache_dir.clone(),
            }));
        }
        let mut url = format!("{}/{}/resolve/{revision}/{file}", self.endpoint, self.repo_id);
        let mut hops = 0;
        let response = loop {
            let mut request = self.hub_agent.get(&url);
            if let Some(token) = &self.token {
                request = request.set("Authorization", &format!("Bearer {token}"));
            }
            let response = request.call().map_err(|e| self.failure(file, e))?;
            // A relative redirect stays on the hub (a renamed repo); an absolute one leads
            // to the CDN and carries the file's headers.
            let next = match response.header("location") {
                Some(location)
                    if (300..400).contains(&response.status()) && location.starts_with('/') && hops < MAX_REDIRECTS =>
                {
                    Some(format!("{}{location}", origin(&url)))
                }
                _ => None,
            };
            match next {
                Some(next) => {
                    url = next;
                    hops += 1;
                }
                None => break response,
            }
        };
        let remote = self.remote(file, &response)?;
        if let Some(expect) = expect.filter(|commit| !commit.eq_ignore_ascii_case(&remote.commit)) {
            let message = format!("asked for commit {expect}, the hub answered with commit {}", remote.commit);
            return Err(Failure::from(self.download_error(file, message)));
        }
        let body = if (300..400).contains(&response.status()) {
            let location = response
                .header("location")
                .ok_or_else(|| self.bad_header(file, "Location", "is missing from a redirect".into()))?;
            let mut request = self.cdn_agent.get(location);
            if let Some(token) = self.token.as_ref().filter(|_| origin(location) == origin(&self.endpoint)) {
                request = request.set("Authorization", &format!("Bearer {token}"));
            }
            request.call().map_err(|e| self.failure(file, e))?
        } else {
            response
        };
        if let Some(length) = body.header("content-length").and_then(|v| v.trim().parse::<u64>().ok()) {
            if length != remote.size {
                return Err(Failure::from(HubError::SizeMismatch {
                    repo: self.repo_id.clone(),
                    file: file.to_string(),
                    endpoint: self.endpoint.clone(),
                    expected: remote.size,
                    received: length,
                }));
            }
        }
        let path = self.store(revision, file, &remote, body.into_reader())?;
        Ok((remote.commit, path))
    }

    /// The commit, blob name, size and hash the hub announces for `file`, checked.
    fn remote(&self, file: &str, response: &ureq::Response) -> Result<Remote, HubError> {
        let commit = response
            .header("x-repo-commit")
            .ok_or_else(|| self.bad_header(file, "X-Repo-Commit", "is missing".into()))?
            .trim();
        if !is_commit_hash(commit) {
            let problem = format!("is not a 40-hex-digit commit ({} characters)", commit.len());
            return Err(self.bad_header(file, "X-Repo-Commit", problem));
        }
        let (header, etag) = match response.header("x-linked-etag") {
            Some(etag) => ("X-Linked-Etag", etag),
            None => {
                ("ETag", response.header("etag").ok_or_else(|| self.bad_header(file, "ETag", "is missing".into()))?)
            }
        };
        let etag = etag.trim().trim_start_matches("W/").trim_matches('"');
        let hex = etag.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex || !(etag.len() == 40 || etag.len() == 64) {
            let problem = format!("is not 40 or 64 hex digits ({} characters)", etag.len());
            return Err(self.bad_header(file, header, problem));
        }
        let lfs = header == "X-Linked-Etag";
        if lfs && etag.len() != 64 {
            return Err(self.bad_header(file, header, "is not a SHA-256 (64 hex digits)".into()));
        }
        let (size_header, size) = if lfs {
            ("X-Linked-Size", response.header("x-linked-size"))
        } else {
            ("Content-Length", response.header("content-length"))
        };
        let size = size
            .ok_or_else(|| self.bad_header(file, size_header, "is missing".into()))?
            .trim()
            .parse::<u64>()
            .map_err(|_| self.bad_header(file, size_header, "is not a byte count".into()))?;
        let etag = etag.to_ascii_lowercase();
        Ok(Remote { commit: commit.to_ascii_lowercase(), sha256: lfs.then(|| etag.clone()), etag, size })
    }

    fn outside(&self, file: &str, path: &Path) -> HubError {
        HubError::OutsideCache {
            repo: self.repo_id.clone(),
            file: file.to_string(),
            path: path.to_path_buf(),
            cache: self.cache_dir.clone(),
        }
    }

    /// `path` is the cache directory joined with plain names only.
    fn check_names_inside(&self, file: &str, path: &Path) -> Result<(), HubError> {
        let relative = path.strip_prefix(&self.cache_dir).map_err(|_| self.outside(file, path))?;
        if relative.components().all(|c| matches!(c, Component::Normal(_))) {
            Ok(())
        } else {
            Err(self.outside(file, path))
        }
    }

    /// `path` lies in the cache directory, also after symlinks (its parent must exist).
    fn check_inside(&self, file: &str, path: &Path) -> Result<(), HubError> {
        self.check_names_inside(file, path)?;
        let cache = self.cache_dir.canonicalize().map_err(|_| self.outside(file, path))?;
        let parent = path.parent().and_then(|p| p.canonicalize().ok()).ok_or_else(|| self.outside(file, path))?;
        if !parent.starts_with(&cache) {
            return Err(self.outside(file, path));
        }
        Ok(())
    }

    /// Creates `dir` in the cache: its names are checked before (nothing is created outside),
    /// the real path after (a symlink in the cache could lead out).
    fn create_dir(&self, file: &str, dir: &Path) -> Result<(), HubError> {
        self.check_names_inside(file, dir)?;
        std::fs::create_dir_all(dir)
            .map_err(|e| self.download_error(file, format!("creating {}: {e}", dir.display())))?;
        self.check_inside(file, &dir.join("x"))
    }

    /// Writes the body to `blobs/<etag>` (checked, fsynced, renamed in), links
    /// `snapshots/<commit>/<file>` to it and points `refs/<revision>` at the commit.
    fn store(&self, revision: &str, file: &str, remote: &Remote, body: impl Read) -> Result<PathBuf, HubError> {
        let io_error = |what: &Path, e: std::io::Error| self.download_error(file, format!("{}: {e}", what.display()));
        let blobs = self.repo_dir.join("blobs");
        self.create_dir(file, &blobs)?;
        let blob = blobs.join(&remote.etag);
        self.check_inside(file, &blob)?;
        let unique = format!(
            "{}.{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        );
        let partial = blobs.join(format!("{}.{unique}.incomplete", remote.etag));
        let written = self.write_checked(file, remote, body, &partial);
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written?;
        std::fs::rename(&partial, &blob).map_err(|e| io_error(&blob, e))?;
        sync_dir(&blobs);

        let pointer = self.repo_dir.join("snapshots").join(&remote.commit).join(file);
        let pointer_dir = pointer.parent().unwrap_or(&self.repo_dir).to_path_buf();
        self.create_dir(file, &pointer_dir)?;
        self.check_inside(file, &pointer)?;
        let staged = pointer_dir.join(format!(".{}.{unique}.incomplete", remote.etag));
        link_or_copy(&blob, &staged, Path::new(file).components().count() + 1, &remote.etag)
            .and_then(|()| std::fs::rename(&staged, &pointer))
            .map_err(|e| {
                let _ = std::fs::remove_file(&staged);
                io_error(&pointer, e)
            })?;
        sync_dir(&pointer_dir);

        if !is_commit_hash(revision) {
            let reference = self.repo_dir.join("refs").join(revision);
            let refs_dir = reference.parent().unwrap_or(&self.repo_dir).to_path_buf();
            self.create_dir(file, &refs_dir)?;
            self.check_inside(file, &reference)?;
            let staged = refs_dir.join(format!(".ref.{unique}.incomplete"));
            write_synced(&staged, remote.commit.as_bytes())
                .and_then(|()| std::fs::rename(&staged, &reference))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&staged);
                    io_error(&reference, e)
                })?;
            sync_dir(&refs_dir);
        }
        Ok(pointer)
    }

    /// Copies at most one byte more than announced into `partial`, then checks size and hash.
    fn write_checked(&self, file: &str, remote: &Remote, body: impl Read, partial: &Path) -> Result<(), HubError> {
        let io_error = |e: std::io::Error| self.download_error(file, format!("{}: {e}", partial.display()));
        let mut out = std::fs::File::create_new(partial).map_err(io_error)?;
        let progress = if remote.size >= PROGRESS_FROM_BYTES && std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(remote.size);
            bar.set_message(file.to_string());
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut body = progress.wrap_read(body.take(remote.size.saturating_add(1)));
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match body.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.download_error(file, format!("the connection failed: {e}"))),
            };
            hasher.update(&chunk[..n]);
            out.write_all(&chunk[..n]).map_err(io_error)?;
            received += n as u64;
        }
        progress.finish_and_clear();
        if received != remote.size {
            return Err(HubError::SizeMismatch {
                repo: self.repo_id.clone(),
                file: file.to_string(),
                endpoint: self.endpoint.clone(),
                expected: remote.size,
                received,
            });
        }
        let actual = format!("{:x}", hasher.finalize());
        if let Some(expected) = &remote.sha256 {
            if &actual != expected {
                return Err(HubError::ChecksumMismatch {
                    repo: self.repo_id.clone(),
                    file: file.to_string(),
                    endpoint: self.endpoint.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        out.sync_all().map_err(io_error)
    }

    fn failure(&self, file: &str, error: ureq::Error) -> Failure {
        let repo = self.repo_id.clone();
        let endpoint = self.endpoint.clone();
        let file = file.to_string();
        match error {
            ureq::Error::Status(status, response) => {
                let code = response.header("x-error-code").unwrap_or_default().to_string();
                match (status, code.as_str()) {
                    (_, "RepoNotFound") => Failure::from(HubError::RepoNotFound { repo, file, endpoint }),
                    (_, "RevisionNotFound") => Failure::from(HubError::RevisionNotFound {
                        repo,
                        file,
                        endpoint,
                        revision: self.revision.clone(),
                    }),
                    (_, "EntryNotFound") | (404, _) => Failure::NotFound,
                    (401 | 403, code) => Failure::from(HubError::AccessDenied {
                        repo,
                        file,
                        endpoint,
                        status,
                        gated: code == "GatedRepo",
                    }),
                    _ => {
                        let detail = response.header("x-error-message").map(str::to_string);
                        let mut message = format!("HTTP {status} {}", response.status_text());
                        if let Some(detail) = detail {
                            message = format!("{message}: {detail}");
                        }
                        Failure::from(HubError::Download { repo, file, endpoint, message })
                    }
                }
            }
            ureq::Error::Transport(transport) => {
                let message = transport.to_string();
                match transport.kind() {
                    ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns | ureq::ErrorKind::ProxyConnect => {
                        Failure::from(HubError::Unreachable {
                            repo,
                            file,
                            endpoint,
                            cache: self.cache_dir.clone(),
                            message,
                        })
                    }
                    _ => Failure::from(HubError::Download { repo, file, endpoint, message }),
                }
            }
        }
    }

    fn no_exist_marker(&self, commit: &str, file: &str) -> PathBuf {
        self.repo_dir.join(".no_exist").join(commit).join(file)
    }

    /// Every file `Checkpoint::from_dir` may read, from the cache or the hub; returns the
    /// snapshot directory.
    fn snapshot(&self) -> Result<PathBuf, HubError> {
        let snapshot = match self.cached_snapshot().filter(|dir| dir.join("config.json").is_file()) {
            Some(dir) => dir,
            None => {
                let (commit, _) =
                    self.download(&self.revision, "config.json", None).map_err(|failure| match failure {
                        Failure::NotFound => HubError::MissingFile {
                            repo: self.repo_id.clone(),
                            file: "config.json".into(),
                            endpoint: self.endpoint.clone(),
                            revision: self.revision.clone(),
                        },
                        Failure::Error(e) => *e,
                    })?;
                self.repo_dir.join("snapshots").join(commit)
            }
        };
        // The rest comes from the commit config.json came from, even if the branch moves on
        // meanwhile.
        let commit = snapshot.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.fetch_rest(&snapshot, &commit)?;
        Ok(snapshot)
    }

    fn fetch_rest(&self, snapshot: &Path, commit: &str) -> Result<(), HubError> {
        self.fetch_one_of(snapshot, commit, "weights", &WEIGHTS)?;
        self.fetch_one_of(snapshot, commit, "tokenizer", &TOKENIZER)?;
        for file in OPTIONAL {
            self.fetch_optional(snapshot, commit, file)?;
        }
        for file in pooling_configs(&snapshot.join("modules.json")) {
            self.fetch_optional(snapshot, commit, &file)?;
        }
        Ok(())
    }

    /// `file` in the snapshot: `Some` if cached or downloaded, `None` if the repo has none.
    fn fetch(&self, snapshot: &Path, commit: &str, file: &str) -> Result<Option<PathBuf>, HubError> {
        let local = snapshot.join(file);
        if local.is_file() {
            return Ok(Some(local));
        }
        let marker = self.no_exist_marker(commit, file);
        if marker.exists() {
            return Ok(None);
        }
        match self.download(commit, file, Some(commit)) {
            Ok((_, path)) => Ok(Some(path)),
            Err(Failure::NotFound) => {
                // Remembered as Python's huggingface_hub does, so the next resolve needs no
                // network; failing to write it only costs that.
                if let Some(parent) = marker.parent() {
                    if std::fs::create_dir_all(parent).is_ok() {
                        let _ = std::fs::File::create(&marker);
                    }
                }
                Ok(None)
            }
            Err(Failure::Error(e)) => Err(*e),
        }
    }

    /// The first of `files` the repo has (a cached one first, so no network is needed if
    /// any is cached).
    fn fetch_one_of(
        &self,
        snapshot: &Path,
        commit: &str,
        what: &'static str,
        files: &[&str],
    ) -> Result<PathBuf, HubError> {
        if let Some(local) = files.iter().map(|f| snapshot.join(f)).find(|p| p.is_file()) {
            return Ok(local);
        }
        for file in files {
            if let Some(path) = self.fetch(snapshot, commit, file)? {
                return Ok(path);
            }
        }
        Err(HubError::MissingOneOf {
            repo: self.repo_id.clone(),
            what,
            files: files.iter().map(|f| f.to_string()).collect(),
            endpoint: self.endpoint.clone(),
            revision: self.revision.clone(),
        })
    }

    /// A file that may be absent. Not reaching the hub is no error here: the required files
    /// are cached by now, and the model loads without the optional ones.
    fn fetch_optional(&self, snapshot: &Path, commit: &str, file: &str) -> Result<(), HubError> {
        match self.fetch(snapshot, commit, file) {
            Ok(_) => Ok(()),
            Err(e) if e.is_offline() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// `scheme://host[:port]` of a URL (the whole string if it has no path).
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename in `dir` durable; not possible (nor needed) on every platform.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// The snapshot entry at `link` for `blob`: a relative symlink `depth` levels up to the repo
/// folder, as huggingface_hub makes them; a copy where symlinks are not available.
fn link_or_copy(blob: &Path, link: &Path, depth: usize, etag: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let _ = blob;
        let target: PathBuf = std::iter::repeat_n("..", depth).collect::<PathBuf>().join("blobs").join(etag);
        std::os::unix::fs::symlink(target, link)
    }
    #[cfg(not(unix))]
    {
        let _ = (depth, etag);
        std::fs::copy(blob, link).map(|_| ())
    }
}

/// The `config.json` of each sentence-transformers Pooling module `modules.json` lists, as
/// the loader finds them (a module without `path` → `1_Pooling`).
fn pooling_configs(modules_json: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(modules_json) else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(modules)) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for module in &modules {
        let is_pooling = module.get("type").and_then(|t| t.as_str()).is_some_and(|t| t.ends_with("models.Pooling"));
        if !is_pooling {
            continue;
        }
        let dir = module.get("path").and_then(|p| p.as_str()).unwrap_or("1_Pooling");
        let dir = dir.trim_end_matches('/');
        if is_plain_relative(dir) {
            let file = format!("{dir}/config.json");
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids() {
        for id in ["dmis-lab/biobert-v1.1", "sentence-transformers/all-MiniLM-L6-v2", "bert-base-uncased", "a_b/c.d"] {
            assert!(check_repo_id(id).is_ok(), "{id}");
            assert!(!looks_like_path(id), "{id}");
        }
        for id in ["a//b", "a/b/c", "-a/b", "a/b.", "a--b/c", "a/b..c", "a b/c", "a/"] {
            assert!(check_repo_id(id).is_err(), "{id}");
        }
        for path in ["./nope", "../x", "/abs", "~/m", "C:\\m", "models/fixtures/x", "dir/"] {
            assert!(looks_like_path(path), "{path}");
        }
    }

    #[test]
    fn pooling_paths_from_modules_json() {
        let dir = std::env::temp_dir().join(format!("bedside-hub-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let modules = dir.join("modules.json");
        std::fs::write(
            &modules,
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                {"idx":2,"name":"2","path":"../evil","type":"sentence_transformers.models.Pooling"},
                {"idx":3,"name":"3","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        assert_eq!(pooling_configs(&modules), vec!["1_Pooling/config.json".to_string()]);
        assert!(pooling_configs(&dir.join("absent.json")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
