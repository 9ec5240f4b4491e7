//! Datasets packed as `.zip`, `.tar.gz` / `.tgz` or `.tar`. Archives arrive as uploads, so
//! extraction refuses absolute paths, `..`, links and special files, and stops as soon as the
//! unpacked bytes or the entry count pass their limits, counting what is actually decompressed
//! rather than trusting the sizes the archive declares.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use tempfile::TempDir;

use super::limits::{MAX_ARCHIVE_ENTRIES, MAX_ARCHIVE_UNPACKED_BYTES};
use crate::{Error, Result};

/// Largest archive file accepted: its content may not unpack to more than
/// [`MAX_ARCHIVE_UNPACKED_BYTES`], plus room for headers and padding.
pub const MAX_ARCHIVE_FILE_BYTES: u64 = MAX_ARCHIVE_UNPACKED_BYTES + 16 * 1024 * 1024;

/// Deepest folder nesting accepted inside an archive.
const MAX_PATH_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Zip,
    TarGz,
    Tar,
}

/// The archive kind of a file from its first bytes, `None` for anything else. A file named like
/// an archive that does not start like one is an error rather than a text dataset.
pub fn sniff_archive(path: &Path) -> Result<Option<ArchiveKind>> {
    let mut head = Vec::with_capacity(512);
    File::open(path).and_then(|f| f.take(512).read_to_end(&mut head)).map_err(|e| Error::io(path, e))?;
    let kind = if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some(ArchiveKind::Zip)
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some(ArchiveKind::TarGz)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(ArchiveKind::Tar)
    } else {
        None
    };
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let named = [".zip", ".tar.gz", ".tgz", ".tar"].iter().find(|ext| name.ends_with(*ext));
    if let (None, Some(ext)) = (kind, named) {
        return Err(Error::file(path, format!("named like a {ext} archive but is not one")));
    }
    Ok(kind)
}

/// Unpacks the archive into a fresh temporary folder, removed when the returned value drops.
pub fn extract_archive(path: &Path, kind: ArchiveKind) -> Result<TempDir> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > MAX_ARCHIVE_FILE_BYTES {
        return Err(Error::file(path, format!("archive is larger than the {} MiB limit", MAX_ARCHIVE_FILE_BYTES >> 20)));
    }
    let dir = tempfile::Builder::new()
        .prefix("gcleaner-dataset-")
        .tempdir()
        .map_err(|e| Error::file(path, format!("cannot create a temporary folder: {e}")))?;
    let mut sink = Sink { archive: path, root: dir.path(), unpacked: 0, entries: 0 };
    match kind {
        ArchiveKind::Zip => extract_zip(&mut sink)?,
        ArchiveKind::TarGz => {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            extract_tar(&mut sink, flate2::read::GzDecoder::new(file))?
        }
        ArchiveKind::Tar => {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            extract_tar(&mut sink, file)?
        }
    }
    Ok(dir)
}

/// Where entries go, and the running totals the limits are checked against.
struct Sink<'a> {
    archive: &'a Path,
    root: &'a Path,
    unpacked: u64,
    entries: usize,
}

impl Sink<'_> {
    fn refuse(&self, entry: &str, why: impl std::fmt::Display) -> Error {
        Error::file(self.archive, format!("entry {entry:?}: {why}"))
    }

    fn count_entry(&mut self) -> Result<()> {
        self.entries += 1;
        if self.entries > MAX_ARCHIVE_ENTRIES {
            return Err(Error::file(self.archive, format!("archive has more than {MAX_ARCHIVE_ENTRIES} entries")));
        }
        Ok(())
    }

    fn too_large(&self) -> Error {
        Error::file(self.archive, format!("archive unpacks to more than {} MiB", MAX_ARCHIVE_UNPACKED_BYTES >> 20))
    }

    fn make_dir(&self, name: &str, relative: &Path) -> Result<()> {
        std::fs::create_dir_all(self.root.join(relative)).map_err(|e| self.refuse(name, e))
    }

    /// Streams one file's content to disk, stopping as soon as the total passes the limit.
    fn write_file(&mut self, name: &str, relative: &Path, content: &mut dyn Read) -> Result<()> {
        let dest = self.root.join(relative);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.refuse(name, e))?;
        }
        let mut out = OpenOptions::new().write(true).create_new(true).open(&dest).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                self.refuse(name, "appears twice in the archive")
            } else {
                self.refuse(name, e)
            }
        })?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match content.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.refuse(name, format!("cannot unpack: {e}"))),
            };
            self.unpacked += n as u64;
            if self.unpacked > MAX_ARCHIVE_UNPACKED_BYTES {
                return Err(self.too_large());
            }
            out.write_all(&buf[..n]).map_err(|e| self.refuse(name, e))?;
        }
        Ok(())
    }
}

/// The relative path an entry name stands for, or why it is refused. Backslashes count as
/// separators too, so a Windows-style `..\x` cannot slip through.
pub(crate) fn safe_relative_path(name: &str) -> Result<PathBuf, &'static str> {
    if name.contains('\0') {
        return Err("path contains a NUL byte");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err("absolute paths are refused");
    }
    let mut relative = PathBuf::new();
    let mut depth = 0;
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => continue,
            ".." => return Err("paths containing `..` are refused"),
            _ if part.len() >= 2 && part.as_bytes()[1] == b':' && depth == 0 => return Err("absolute paths are refused"),
            _ => {
                relative.push(part);
                depth += 1;
            }
        }
    }
    if depth > MAX_PATH_DEPTH {
        return Err("path is nested too deeply");
    }
    // Belt and braces: the result must be a plain relative path.
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err("path is not a plain relative path");
    }
    Ok(relative)
}

fn extract_zip(sink: &mut Sink<'_>) -> Result<()> {
    let archive_path = sink.archive;
    let file = File::open(archive_path).map_err(|e| Error::io(archive_path, e))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| Error::file(archive_path, format!("not a readable zip archive: {e}")))?;
    if zip.len() > MAX_ARCHIVE_ENTRIES {
        return Err(Error::file(archive_path, format!("archive has more than {MAX_ARCHIVE_ENTRIES} entries")));
    }
    for i in 0..zip.len() {
        sink.count_entry()?;
        let mut entry = zip.by_index(i).map_err(|e| Error::file(archive_path, format!("entry {i}: cannot read: {e}")))?;
        let name = entry.name().to_string();
        let relative = safe_relative_path(&name).map_err(|why| sink.refuse(&name, why))?;
        // Unix file type bits, when the archive records them: only regular files and folders.
        const S_IFMT: u32 = 0o170000;
        let file_type = entry.unix_mode().map(|m| m & S_IFMT).unwrap_or(0);
        match file_type {
            0 | 0o100000 | 0o040000 => {}
            0o120000 => return Err(sink.refuse(&name, "symbolic links are refused")),
            _ => return Err(sink.refuse(&name, "special files are refused")),
        }
        if entry.is_dir() || file_type == 0o040000 {
            sink.make_dir(&name, &relative)?;
        } else {
            sink.write_file(&name, &relative, &mut entry)?;
        }
    }
    Ok(())
}

/// A reader that fails once more than `limit` bytes have passed, so a tar stream cannot make
/// the tar reader buffer unbounded metadata (long names, pax headers).
struct BoundedStream<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for BoundedStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            // Probe for one more byte: a stream that ends exactly at the limit is fine.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.exceeded.set(true);
                    Err(std::io::Error::other("archive stream exceeds its size limit"))
                }
            };
        }
        let cap = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn extract_tar<R: Read>(sink: &mut Sink<'_>, stream: R) -> Result<()> {
    let archive_path = sink.archive;
    let exceeded = Rc::new(Cell::new(false));
    let bounded = BoundedStream { inner: stream, remaining: MAX_ARCHIVE_FILE_BYTES, exceeded: exceeded.clone() };
    let mut tar = tar::Archive::new(bounded);
    let stream_error = |e: std::io::Error, sink: &Sink<'_>| {
        if exceeded.get() {
            sink.too_large()
        } else {
            Error::file(archive_path, format!("not a readable tar archive: {e}"))
        }
    };
    let entries = tar.entries().map_err(|e| stream_error(e, sink))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| stream_error(e, sink))?;
        sink.count_entry()?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        use tar::EntryType;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Symlink | EntryType::Link => {
                return Err(sink.refuse(&name, "links are refused"));
            }
            // Global pax metadata: describes the archive, holds no file.
            EntryType::XGlobalHeader => continue,
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            other => return Err(sink.refuse(&name, format!("entry type {other:?} is refused"))),
        }
        let relative = safe_relative_path(&name).map_err(|why| sink.refuse(&name, why))?;
        if kind == EntryType::Directory {
            sink.make_dir(&name, &relative)?;
        } else {
            let result = sink.write_file(&name, &relative, &mut entry);
            if exceeded.get() {
                return Err(sink.too_large());
            }
            result?;
        }
    }
    Ok(())
}
