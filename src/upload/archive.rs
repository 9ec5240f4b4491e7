//! Safety checks on data archives before anything unpacks them: no links, no paths that leave
//! the archive, a bounded number of entries, and a bounded unpacked size measured by actually
//! decompressing (declared sizes can lie).

use std::io::{self, Read};
use std::path::{Component, Path};

#[derive(Debug, Clone, Copy)]
pub struct ArchiveLimits {
    pub max_unpacked_bytes: u64,
    pub max_entries: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive entry {0:?} escapes the archive (absolute path or '..')")]
    PathTraversal(String),
    #[error("archive entry {0:?} is a link; links are not accepted")]
    Link(String),
    #[error("archive entry {0:?} is not a regular file or directory")]
    SpecialFile(String),
    #[error("archive has more than {0} entries")]
    TooManyEntries(usize),
    #[error("archive unpacks to more than {0} bytes")]
    TooLarge(u64),
    #[error("archive is malformed: {0}")]
    Malformed(String),
}

fn check_name(name: &str) -> Result<(), ArchiveError> {
    let path = Path::new(name);
    let ok = !name.is_empty()
        && !name.contains('\0')
        && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(())
    } else {
        Err(ArchiveError::PathTraversal(name.to_string()))
    }
}

/// Counts bytes through `reader`, failing once `budget` is exceeded.
fn drain_counted(reader: &mut impl Read, budget: &mut u64, limit: u64) -> Result<(), ArchiveError> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        if n == 0 {
            return Ok(());
        }
        if n as u64 > *budget {
            return Err(ArchiveError::TooLarge(limit));
        }
        *budget -= n as u64;
    }
}

pub fn check_zip(path: &Path, limits: ArchiveLimits) -> Result<(), ArchiveError> {
    let file = std::fs::File::open(path).map_err(|e| ArchiveError::Malformed(e.to_string()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| ArchiveError::Malformed(e.to_string()))?;
    if archive.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries(limits.max_entries));
    }
    let mut budget = limits.max_unpacked_bytes;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        let name = entry.name().to_string();
        check_name(&name)?;
        if let Some(mode) = entry.unix_mode() {
            let kind = mode & 0o170000;
            if kind == 0o120000 {
                return Err(ArchiveError::Link(name));
            }
            if kind != 0 && kind != 0o100000 && kind != 0o040000 {
                return Err(ArchiveError::SpecialFile(name));
            }
        }
        if entry.size() > budget {
            return Err(ArchiveError::TooLarge(limits.max_unpacked_bytes));
        }
        if entry.is_file() {
            drain_counted(&mut entry, &mut budget, limits.max_unpacked_bytes)?;
        }
    }
    Ok(())
}

pub fn check_tar_gz(path: &Path, limits: ArchiveLimits) -> Result<(), ArchiveError> {
    let file = std::fs::File::open(path).map_err(|e| ArchiveError::Malformed(e.to_string()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let mut budget = limits.max_unpacked_bytes;
    let entries = archive.entries().map_err(|e| ArchiveError::Malformed(e.to_string()))?;
    for (count, entry) in entries.enumerate() {
        if count >= limits.max_entries {
            return Err(ArchiveError::TooManyEntries(limits.max_entries));
        }
        let mut entry = entry.map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        check_name(&name)?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(ArchiveError::Link(name));
        }
        if !(kind.is_file()
            || kind.is_dir()
            || kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname())
        {
            return Err(ArchiveError::SpecialFile(name));
        }
        drain_counted(&mut entry, &mut budget, limits.max_unpacked_bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_stay_inside() {
        assert!(check_name("a/b.txt").is_ok());
        assert!(check_name("./a").is_ok());
        assert!(check_name("../a").is_err());
        assert!(check_name("a/../../b").is_err());
        assert!(check_name("/etc/passwd").is_err());
        assert!(check_name("").is_err());
    }
}
