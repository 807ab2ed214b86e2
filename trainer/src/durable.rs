//! Crash-safe writes: a file or a whole directory is replaced so that a reader, or a run
//! killed at any instruction, finds either the complete old version or the complete new one.
//!
//! A file: written to `X.partial`, fsynced, renamed over `X` (rename replaces atomically),
//! then the parent directory is fsynced so the rename itself survives a power cut.
//!
//! A directory cannot be renamed over a non-empty one, so [`replace_dir_atomic`] fills
//! `X.partial`, fsyncs its files and itself, renames `X` aside to `X.old`, renames `X.partial`
//! to `X`, fsyncs the parent and only then deletes `X.old`. Killed between the two renames,
//! only `X.old` exists: [`recover_dir`] renames it back, and [`committed_dir`] names it to
//! readers that must not write. A leftover `X.partial` is never read and is removed.
//!
//! Test hook: `BEDSIDE_TEST_KILL_AT=<step>[:<n>][@<name>]` aborts the process
//! (`std::process::abort`, as abrupt as `kill -9` for the files) right after the named
//! [`Step`] the `n`-th time (default 1) it is reached, counting only targets whose file name
//! is `<name>` when given (e.g. `after-rename-aside:2@state`). Tests use it to check that
//! `--resume` recovers from a kill at every step; it is read nowhere else.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The suffix of the directory or file being written before it is renamed into place.
const PARTIAL: &str = "partial";
/// The suffix of the previous directory while the new one is renamed in.
const OLD: &str = "old";

/// A failed durable write, naming the path and what was being done to it.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct DurableError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn fail(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DurableError {
    let path = path.to_path_buf();
    move |source| DurableError { action, path, source }
}

/// The points of a durable write after which the test hook can kill the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The new contents are written (file) or the fill function returned (directory).
    AfterWrite,
    /// The new file, or every file of the new directory, is fsynced.
    AfterFsync,
    /// The new directory itself (its entries) is fsynced.
    AfterTempDirFsync,
    /// The old directory was renamed to `X.old` (nothing is at `X`).
    AfterRenameAside,
    /// The new version was renamed to `X`.
    AfterRenameIn,
    /// The parent directory is fsynced (the rename is durable).
    AfterDirFsync,
    /// `X.old` is deleted: the write is complete.
    AfterRemoveOld,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::AfterWrite,
        Step::AfterFsync,
        Step::AfterTempDirFsync,
        Step::AfterRenameAside,
        Step::AfterRenameIn,
        Step::AfterDirFsync,
        Step::AfterRemoveOld,
    ];

    /// The name the test hook uses.
    pub fn name(self) -> &'static str {
        match self {
            Step::AfterWrite => "after-write",
            Step::AfterFsync => "after-fsync",
            Step::AfterTempDirFsync => "after-temp-dir-fsync",
            Step::AfterRenameAside => "after-rename-aside",
            Step::AfterRenameIn => "after-rename-in",
            Step::AfterDirFsync => "after-dir-fsync",
            Step::AfterRemoveOld => "after-remove-old",
        }
    }
}

/// The test hook: aborts right after `step` on `target` when `BEDSIDE_TEST_KILL_AT` says so.
fn reached(step: Step, target: &Path) {
    let Ok(spec) = std::env::var("BEDSIDE_TEST_KILL_AT") else { return };
    let (spec, only) = match spec.split_once('@') {
        Some((spec, name)) => (spec.to_string(), Some(name.to_string())),
        None => (spec, None),
    };
    let (name, nth) = match spec.split_once(':') {
        Some((name, n)) => (name.to_string(), n.parse::<usize>().unwrap_or(1)),
        None => (spec, 1),
    };
    if name != step.name() || only.is_some_and(|only| target.file_name() != Some(only.as_ref())) {
        return;
    }
    static COUNTS: Mutex<Option<HashMap<&'static str, usize>>> = Mutex::new(None);
    let mut counts = COUNTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let count = counts.get_or_insert_with(HashMap::new).entry(step.name()).or_insert(0);
    *count += 1;
    if *count == nth {
        eprintln!("BEDSIDE_TEST_KILL_AT: aborting {} {}", step.name(), target.display());
        std::process::abort();
    }
}

/// `X.<suffix>` next to `path`, keeping any extension `X` has (`report.json.partial`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a directory's entries (creations, renames, removals in it) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(fail("syncing the directory", dir))
}

/// Windows cannot open a directory as a file; its renames are journaled by NTFS.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), DurableError> {
    Ok(())
}

/// Replaces the file at `path` with `bytes`, atomically and durably.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), DurableError> {
    write_file_atomic_with(path, |file| file.write_all(bytes))
}

/// [`write_file_atomic`] with the contents streamed by `fill` (e.g. `io::copy` of a large
/// file); the file is created in the same directory as `path`.
pub fn write_file_atomic_with(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> Result<(), DurableError> {
    let parent = parent_of(path);
    fs::create_dir_all(parent).map_err(fail("creating", parent))?;
    let partial = sibling(path, PARTIAL);
    let mut file = File::create(&partial).map_err(fail("creating", &partial))?;
    fill(&mut file).map_err(fail("writing", &partial))?;
    reached(Step::AfterWrite, path);
    file.sync_all().map_err(fail("syncing", &partial))?;
    drop(file);
    reached(Step::AfterFsync, path);
    fs::rename(&partial, path).map_err(fail("moving into place", path))?;
    reached(Step::AfterRenameIn, path);
    sync_dir(parent)?;
    reached(Step::AfterDirFsync, path);
    Ok(())
}

/// Replaces the directory `dir` with what `fill` writes into the (empty, new) directory it
/// is given, so that `dir` is always either the complete old or the complete new version
/// (see the module documentation; readers recover with [`recover_dir`] or
/// [`committed_dir`]). A failing `fill` leaves the old `dir` untouched.
pub fn replace_dir_atomic<F>(dir: &Path, fill: F) -> anyhow::Result<()>
where
    F: FnOnce(&Path) -> anyhow::Result<()>,
{
    let parent = parent_of(dir);
    fs::create_dir_all(parent).map_err(fail("creating", parent))?;
    recover_dir(dir)?;
    let partial = sibling(dir, PARTIAL);
    fs::create_dir(&partial).map_err(fail("creating", &partial))?;
    if let Err(e) = fill(&partial) {
        // Best effort: a leftover is removed by the next write or recovery anyway.
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }
    reached(Step::AfterWrite, dir);
    sync_tree(&partial, 0)?;
    reached(Step::AfterFsync, dir);
    sync_dir(&partial)?;
    reached(Step::AfterTempDirFsync, dir);
    let old = sibling(dir, OLD);
    let had_old = dir.exists();
    if had_old {
        fs::rename(dir, &old).map_err(fail("moving the previous version aside", dir))?;
        reached(Step::AfterRenameAside, dir);
    }
    fs::rename(&partial, dir).map_err(fail("moving into place", dir))?;
    reached(Step::AfterRenameIn, dir);
    sync_dir(parent)?;
    reached(Step::AfterDirFsync, dir);
    if had_old {
        fs::remove_dir_all(&old).map_err(fail("removing the previous version", &old))?;
        sync_dir(parent)?;
        reached(Step::AfterRemoveOld, dir);
    }
    Ok(())
}

/// How deep a directory written by `fill` may nest: ours nest one level (`1_Pooling/`).
const MAX_DEPTH: usize = 8;

/// Fsyncs every file under `dir` and every subdirectory's entries (not `dir`'s own).
fn sync_tree(dir: &Path, depth: usize) -> Result<(), DurableError> {
    if depth > MAX_DEPTH {
        return Err(fail("syncing", dir)(io::Error::other("directories nest too deep")));
    }
    for entry in fs::read_dir(dir).map_err(fail("listing", dir))? {
        let path = entry.map_err(fail("listing", dir))?.path();
        let kind = fs::symlink_metadata(&path).map_err(fail("reading", &path))?.file_type();
        if kind.is_dir() {
            sync_tree(&path, depth + 1)?;
            sync_dir(&path)?;
        } else if kind.is_file() {
            File::open(&path).and_then(|f| f.sync_all()).map_err(fail("syncing", &path))?;
        }
    }
    Ok(())
}

/// Brings `dir` back to a complete version after a kill in [`replace_dir_atomic`]: `X.old`
/// alone (killed between the renames) is renamed back to `X`; `X.old` beside a complete `X`
/// (killed before the old one was deleted) and any `X.partial` are removed. Returns whether
/// `dir` exists afterwards.
pub fn recover_dir(dir: &Path) -> Result<bool, DurableError> {
    let old = sibling(dir, OLD);
    let partial = sibling(dir, PARTIAL);
    let parent = parent_of(dir);
    let mut changed = false;
    if old.is_dir() {
        if dir.exists() {
            fs::remove_dir_all(&old).map_err(fail("removing the previous version", &old))?;
        } else {
            fs::rename(&old, dir).map_err(fail("restoring the previous version", &old))?;
        }
        changed = true;
    }
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(fail("removing the unfinished", &partial))?;
        changed = true;
    }
    if changed {
        sync_dir(parent)?;
    }
    Ok(dir.is_dir())
}

/// The complete version of `dir` for a reader that must not write: `dir` itself, or
/// `X.old` when a kill left only that; `None` when there is neither.
pub fn committed_dir(dir: &Path) -> Option<PathBuf> {
    if dir.is_dir() {
        return Some(dir.to_path_buf());
    }
    let old = sibling(dir, OLD);
    old.is_dir().then_some(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bedside-durable-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn fill_with(text: &'static str) -> impl FnOnce(&Path) -> anyhow::Result<()> {
        move |d: &Path| {
            fs::create_dir_all(d.join("sub"))?;
            fs::write(d.join("a.txt"), text)?;
            fs::write(d.join("sub/b.txt"), text)?;
            Ok(())
        }
    }

    fn read(dir: &Path) -> (String, String) {
        (fs::read_to_string(dir.join("a.txt")).unwrap(), fs::read_to_string(dir.join("sub/b.txt")).unwrap())
    }

    #[test]
    fn a_new_directory_replaces_the_old_and_leaves_nothing_beside_it() {
        let root = temp("replace");
        let dir = root.join("state");
        replace_dir_atomic(&dir, fill_with("one")).unwrap();
        fs::write(dir.join("stale.txt"), "only in the old one").unwrap();
        replace_dir_atomic(&dir, fill_with("two")).unwrap();
        assert_eq!(read(&dir), ("two".into(), "two".into()));
        assert!(!dir.join("stale.txt").exists(), "the old directory's files must go with it");
        let mut names: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["state"]);
    }

    #[test]
    fn a_failing_fill_keeps_the_old_directory() {
        let root = temp("failing");
        let dir = root.join("best");
        replace_dir_atomic(&dir, fill_with("one")).unwrap();
        let err = replace_dir_atomic(&dir, |d| {
            fs::write(d.join("a.txt"), "half")?;
            anyhow::bail!("the writer failed")
        })
        .unwrap_err();
        assert!(err.to_string().contains("the writer failed"));
        assert_eq!(read(&dir), ("one".into(), "one".into()));
        assert!(!sibling(&dir, PARTIAL).exists());
        // A leftover from a killed write is cleared by the next one.
        fs::create_dir(sibling(&dir, PARTIAL)).unwrap();
        replace_dir_atomic(&dir, fill_with("two")).unwrap();
        assert_eq!(read(&dir), ("two".into(), "two".into()));
        assert!(!sibling(&dir, PARTIAL).exists());
    }

    /// The states a kill can leave (the directory layout right after each step), recovered.
    #[test]
    fn recovery_after_a_kill_between_any_two_steps_finds_old_or_new() {
        let root = temp("recover");
        let dir = root.join("state");
        let (old, partial) = (sibling(&dir, OLD), sibling(&dir, PARTIAL));
        let make = |path: &Path, text: &'static str| {
            fs::create_dir_all(path).unwrap();
            fill_with(text)(path).unwrap();
        };
        // Killed while filling or syncing X.partial: the old X is kept, X.partial removed.
        make(&dir, "old");
        make(&partial, "new");
        assert!(recover_dir(&dir).unwrap());
        assert_eq!(read(&dir).0, "old");
        assert!(!partial.exists());
        // Killed after X was renamed aside: only X.old and X.partial exist.
        fs::rename(&dir, &old).unwrap();
        make(&partial, "new");
        assert_eq!(committed_dir(&dir), Some(old.clone()));
        assert!(recover_dir(&dir).unwrap());
        assert_eq!(read(&dir).0, "old");
        assert!(!old.exists() && !partial.exists());
        // Killed after the new X was renamed in, before X.old was removed: the new one wins.
        fs::rename(&dir, &old).unwrap();
        make(&dir, "new");
        assert_eq!(committed_dir(&dir), Some(dir.clone()));
        assert!(recover_dir(&dir).unwrap());
        assert_eq!(read(&dir).0, "new");
        assert!(!old.exists());
        // Nothing was ever written.
        assert!(!recover_dir(&root.join("never")).unwrap());
        assert_eq!(committed_dir(&root.join("never")), None);
    }

    #[test]
    fn files_are_replaced_whole_and_errors_name_the_path() {
        let root = temp("file");
        let path = root.join("report.json");
        write_file_atomic(&path, b"{\"a\": 1}").unwrap();
        write_file_atomic(&path, b"{}").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        assert!(!sibling(&path, PARTIAL).exists());
        let missing = root.join("report.json").join("inside-a-file");
        let err = write_file_atomic(&missing, b"x").unwrap_err();
        assert!(err.to_string().contains("inside-a-file") || err.to_string().contains("report.json"), "{err}");
    }
}
