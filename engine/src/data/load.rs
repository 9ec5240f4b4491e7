//! `load_dataset`: one entry point that recognises every supported input.
//!
//! - a folder: a TU dataset when it holds a `*_A.txt`, otherwise the single dataset found inside
//!   it (see [`locate_dataset`]);
//! - a `.zip` / `.tar.gz` / `.tgz` / `.tar` file (recognised by its first bytes): unpacked with
//!   limits into a temporary folder, then searched like a folder;
//! - a JSON file (`.json`, or text starting with `{` or `[`);
//! - a TU `*_A.txt` file: its folder is loaded;
//! - any other file: the GIN text format.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::archive::{extract_archive, sniff_archive};
use super::gin_text::load_gin_text;
use super::graph::Dataset;
use super::json::load_json_dataset;
use super::limits::MAX_ARCHIVE_ENTRIES;
use super::text::UTF8_BOM;
use super::tu::{load_tu_dir, tu_prefix};
use crate::{Error, Result};

/// Deepest folder level searched for a dataset.
const MAX_SEARCH_DEPTH: usize = 8;

pub fn load_dataset(path: &Path) -> Result<Dataset> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::file(path, "not found"),
        _ => Error::io(path, e),
    })?;
    if meta.is_dir() {
        return load_dir(path);
    }
    if !meta.is_file() {
        // Opening a FIFO or device could block or never end.
        return Err(Error::file(path, "not a regular file or folder"));
    }
    if let Some(kind) = sniff_archive(path)? {
        let unpacked = extract_archive(path, kind)?;
        return load_dir(unpacked.path()).map_err(|e| relocate(e, unpacked.path(), path));
    }
    load_file(path)
}

fn load_dir(dir: &Path) -> Result<Dataset> {
    match locate_dataset(dir)? {
        Located::Tu(tu_dir) => load_tu_dir(&tu_dir),
        Located::File(file) => load_file(&file),
    }
}

fn load_file(path: &Path) -> Result<Dataset> {
    if is_json(path)? {
        return load_json_dataset(path);
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if let (Some(prefix), Some(dir)) = (name.strip_suffix("_A.txt"), path.parent()) {
        if dir.join(format!("{prefix}_graph_indicator.txt")).is_file() {
            return load_tu_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir });
        }
    }
    load_gin_text(path)
}

fn is_json(path: &Path) -> Result<bool> {
    if has_extension(path, "json") {
        return Ok(true);
    }
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path).and_then(|f| f.take(4096).read_to_end(&mut head)).map_err(|e| Error::io(path, e))?;
    let content = head.strip_prefix(UTF8_BOM).unwrap_or(&head);
    let first = content.iter().find(|b| !b.is_ascii_whitespace());
    Ok(matches!(first, Some(b'{' | b'[')))
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Where a dataset sits inside a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// A TU dataset folder.
    Tu(PathBuf),
    /// A single GIN text or JSON file.
    File(PathBuf),
}

/// Finds the one dataset in `root`: `root` itself when it is a TU folder, otherwise a search of
/// its subfolders (hidden entries, `__MACOSX` and symbolic links skipped) for TU folders and
/// `.txt` / `.json` files that are not documentation (README, LICENSE, ...). Exactly one TU
/// folder or, when there is none, exactly one file must turn up.
pub fn locate_dataset(root: &Path) -> Result<Located> {
    if tu_prefix(root)?.is_some() {
        return Ok(Located::Tu(root.to_path_buf()));
    }
    let mut tu_dirs = Vec::new();
    let mut files = Vec::new();
    let mut visited = 0usize;
    let mut pending = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = pending.pop() {
        if dir != root && tu_prefix(&dir)?.is_some() {
            tu_dirs.push(dir);
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            visited += 1;
            if visited > MAX_ARCHIVE_ENTRIES {
                return Err(Error::file(root, format!("more than {MAX_ARCHIVE_ENTRIES} entries to search for a dataset")));
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "__MACOSX" {
                continue;
            }
            let file_type = entry.file_type().map_err(|e| Error::io(&entry.path(), e))?;
            if file_type.is_dir() && depth < MAX_SEARCH_DEPTH {
                pending.push((entry.path(), depth + 1));
            } else if file_type.is_file() && is_candidate_file(&name) {
                files.push(entry.path());
            }
        }
    }
    tu_dirs.sort();
    files.sort();
    match (tu_dirs.len(), files.len()) {
        (1, 0) => Ok(Located::Tu(tu_dirs.remove(0))),
        (0, 1) => Ok(Located::File(files.remove(0))),
        (0, 0) => Err(Error::file(root, "no dataset found: expected a TU folder (with DS_A.txt) or one .txt / .json file")),
        _ => {
            let found: Vec<String> =
                tu_dirs.iter().chain(&files).map(|p| p.strip_prefix(root).unwrap_or(p).display().to_string()).collect();
            Err(Error::file(root, format!("holds several possible datasets ({}); keep exactly one", found.join(", "))))
        }
    }
}

fn is_candidate_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let Some((stem, ext)) = lower.rsplit_once('.') else { return false };
    let documentation = ["readme", "license", "licence", "notice", "changelog", "citation"].iter().any(|d| stem.starts_with(d));
    matches!(ext, "txt" | "json") && !documentation
}

/// Rewrites file paths in an error from the temporary unpack folder to `archive!/inner/path`,
/// so the message names the file the user actually has.
fn relocate(err: Error, unpacked: &Path, archive: &Path) -> Error {
    let prefix = unpacked.display().to_string();
    let rename = |path: String| match path.strip_prefix(&prefix) {
        Some(inner) => {
            format!("{}!{}", archive.display(), if inner.is_empty() { "/" } else { inner })
        }
        None => path,
    };
    match err {
        Error::Parse { path, line, message } => Error::Parse { path: rename(path), line, message },
        Error::File { path, message } => Error::File { path: rename(path), message },
        other => other,
    }
}
