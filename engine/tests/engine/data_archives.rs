//! Datasets inside .zip / .tar.gz / .tar archives, and the attacks an uploaded archive can try:
//! path traversal, absolute paths, links, too many entries, decompression bombs.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use gcleaner_engine::data::limits::{MAX_ARCHIVE_ENTRIES, MAX_ARCHIVE_UNPACKED_BYTES};
use gcleaner_engine::data::load_dataset;
use tempfile::TempDir;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

const TU: &[(&str, &str)] = &[
    ("DS_A.txt", "1, 2\n2, 1\n2, 3\n3, 2\n4, 5\n5, 4\n"),
    ("DS_graph_indicator.txt", "1\n1\n1\n2\n2\n"),
    ("DS_graph_labels.txt", "-1\n1\n"),
];

const GIN_TEXT: &str = "2\n2 0\n0 1 1\n0 1 0\n1 1\n0 0\n";

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
    for (name, content) in entries {
        zip.start_file(*name, deflated()).unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap();
}

/// A tar header for `name` written byte for byte, bypassing the builder's own path checks.
fn raw_header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    header
}

fn write_tar_gz(path: &Path, entries: &[(tar::Header, &[u8])]) {
    let gz = GzEncoder::new(File::create(path).unwrap(), Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (header, content) in entries {
        tar.append(header, *content).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn tu_tar_entries(folder: &str) -> Vec<(tar::Header, &'static [u8])> {
    TU.iter()
        .map(|(name, content)| {
            (raw_header(&format!("{folder}{name}"), tar::EntryType::Regular, content.len() as u64), content.as_bytes())
        })
        .collect()
}

fn error_of(path: &Path) -> String {
    match load_dataset(path) {
        Ok(ds) => panic!("{} should be refused, loaded {} graphs", path.display(), ds.len()),
        Err(e) => e.to_string(),
    }
}

fn assert_says(err: &str, words: &str) {
    assert!(err.contains(words), "error {err:?} should say {words:?}");
}

struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

#[test]
fn zip_of_a_tu_folder_loads() {
    let s = Scratch::new();
    let archive = s.path("upload.zip");
    let mut zip = zip::ZipWriter::new(File::create(&archive).unwrap());
    zip.add_directory("MUTAGish/", deflated()).unwrap();
    for (name, content) in TU {
        zip.start_file(format!("MUTAGish/{name}"), deflated()).unwrap();
        zip.write_all(content.as_bytes()).unwrap();
    }
    zip.start_file("MUTAGish/README.txt", deflated()).unwrap();
    zip.write_all(b"about the data").unwrap();
    zip.start_file("__MACOSX/._DS_A.txt", deflated()).unwrap();
    zip.write_all(b"resource fork").unwrap();
    zip.finish().unwrap();

    let ds = load_dataset(&archive).unwrap();
    assert_eq!(ds.name, "DS");
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.class_labels, vec![-1, 1]);
    assert_eq!(ds.graphs[0].edges, vec![(0, 1), (1, 2)]);
}

#[test]
fn zip_with_files_at_the_root_and_a_single_text_file_load() {
    let s = Scratch::new();
    let root = s.path("flat.zip");
    let entries: Vec<(&str, &[u8])> = TU.iter().map(|(n, c)| (*n, c.as_bytes())).collect();
    write_zip(&root, &entries);
    assert_eq!(load_dataset(&root).unwrap().len(), 2);

    let gin = s.path("gin.zip");
    write_zip(&gin, &[("data/bitcoin.txt", GIN_TEXT.as_bytes()), ("LICENSE.txt", b"text")]);
    let ds = load_dataset(&gin).unwrap();
    assert_eq!((ds.name.as_str(), ds.len()), ("bitcoin", 2));
}

#[test]
fn tar_gz_tgz_and_plain_tar_load() {
    let s = Scratch::new();
    for name in ["data.tar.gz", "data.tgz"] {
        let archive = s.path(name);
        write_tar_gz(&archive, &tu_tar_entries("DS/"));
        assert_eq!(load_dataset(&archive).unwrap().len(), 2, "{name}");
    }
    let gin = s.path("gin.tar.gz");
    write_tar_gz(&gin, &[(raw_header("g.txt", tar::EntryType::Regular, GIN_TEXT.len() as u64), GIN_TEXT.as_bytes())]);
    assert_eq!(load_dataset(&gin).unwrap().name, "g");

    let plain = s.path("data.tar");
    let mut tar = tar::Builder::new(File::create(&plain).unwrap());
    for (header, content) in tu_tar_entries("") {
        tar.append(&header, content).unwrap();
    }
    tar.into_inner().unwrap().flush().unwrap();
    assert_eq!(load_dataset(&plain).unwrap().len(), 2);
}

#[test]
fn errors_inside_an_archive_name_the_archive_entry_and_line() {
    let s = Scratch::new();
    let archive = s.path("bad.zip");
    write_zip(
        &archive,
        &[
            ("DS/DS_A.txt", b"1, 2\n2, 9\n"),
            ("DS/DS_graph_indicator.txt", TU[1].1.as_bytes()),
            ("DS/DS_graph_labels.txt", TU[2].1.as_bytes()),
        ],
    );
    let err = error_of(&archive);
    let expected = format!("{}!/DS/DS_A.txt:2:", archive.display());
    assert!(err.starts_with(&expected), "{err:?} should start with {expected:?}");
    assert_says(&err, "node id 9 out of range");
}

#[test]
fn archives_without_exactly_one_dataset_are_refused() {
    let s = Scratch::new();
    let two = s.path("two.zip");
    write_zip(&two, &[("a.json", b"[]"), ("b.txt", GIN_TEXT.as_bytes())]);
    assert_says(&error_of(&two), "several possible datasets");
    let none = s.path("none.zip");
    write_zip(&none, &[("picture.png", b"\x89PNG")]);
    assert_says(&error_of(&none), "no dataset found");
}

#[test]
fn files_named_like_archives_must_be_archives() {
    let s = Scratch::new();
    let fake = s.path("data.zip");
    std::fs::write(&fake, GIN_TEXT).unwrap();
    assert_says(&error_of(&fake), "named like a .zip archive but is not one");
    let truncated = s.path("cut.zip");
    write_zip(&truncated, &[("g.txt", GIN_TEXT.as_bytes())]);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_says(&error_of(&truncated), "cut.zip");
}

#[test]
fn zip_traversal_and_absolute_paths_are_refused() {
    let s = Scratch::new();
    let cases: &[(&str, &str)] = &[
        ("../evil.txt", "`..`"),
        ("data/../../evil.txt", "`..`"),
        ("..\\evil.txt", "`..`"),
        ("/tmp/evil.txt", "absolute"),
        ("\\evil.txt", "absolute"),
        ("C:/evil.txt", "absolute"),
    ];
    for (i, (name, words)) in cases.iter().enumerate() {
        let archive = s.path(&format!("t{i}.zip"));
        write_zip(&archive, &[(name, GIN_TEXT.as_bytes())]);
        let err = error_of(&archive);
        assert_says(&err, words);
        assert_says(&err, &format!("{name:?}"));
    }
    assert!(!s.dir.path().parent().unwrap().join("evil.txt").exists());
}

#[test]
fn zip_symlinks_are_refused() {
    let s = Scratch::new();
    let archive = s.path("link.zip");
    let mut zip = zip::ZipWriter::new(File::create(&archive).unwrap());
    zip.add_symlink("data.txt", "/etc/passwd", SimpleFileOptions::default()).unwrap();
    zip.finish().unwrap();
    assert_says(&error_of(&archive), "symbolic links are refused");
}

#[test]
fn zip_with_too_many_entries_is_refused() {
    let s = Scratch::new();
    let archive = s.path("many.zip");
    let mut zip = zip::ZipWriter::new(File::create(&archive).unwrap());
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for i in 0..=MAX_ARCHIVE_ENTRIES {
        zip.start_file(format!("f{i}.bin"), stored).unwrap();
    }
    zip.finish().unwrap();
    assert_says(&error_of(&archive), &format!("more than {MAX_ARCHIVE_ENTRIES} entries"));
}

/// A zip holding one deflated entry of `size` zero bytes.
fn zero_bomb(path: &Path, size: u64) {
    let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
    zip.start_file("bomb.txt", deflated().compression_level(Some(1))).unwrap();
    let chunk = vec![b'0'; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        zip.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    zip.finish().unwrap();
}

#[test]
fn zip_bomb_over_the_unpacked_limit_is_refused() {
    let s = Scratch::new();
    let archive = s.path("bomb.zip");
    zero_bomb(&archive, MAX_ARCHIVE_UNPACKED_BYTES + (1 << 20));
    assert!(std::fs::metadata(&archive).unwrap().len() < (1 << 20), "the bomb should be small");
    assert_says(&error_of(&archive), "unpacks to more than 64 MiB");
}

/// Overwrites every little-endian u32 equal to `from` at a zip header's size field.
fn patch_declared_sizes(bytes: &mut [u8], real: u32, declared: u32) -> usize {
    let mut patched = 0;
    // Local header: signature PK\x03\x04, uncompressed size at +22. Central: PK\x01\x02, +24.
    for (signature, offset) in [(b"PK\x03\x04", 22usize), (b"PK\x01\x02", 24usize)] {
        let mut i = 0;
        while i + offset + 4 <= bytes.len() {
            if &bytes[i..i + 4] == signature && bytes[i + offset..i + offset + 4] == real.to_le_bytes() {
                bytes[i + offset..i + offset + 4].copy_from_slice(&declared.to_le_bytes());
                patched += 1;
            }
            i += 1;
        }
    }
    patched
}

#[test]
fn zip_that_understates_its_sizes_is_still_stopped_at_the_limit() {
    let s = Scratch::new();
    let archive = s.path("liar.zip");
    let real = MAX_ARCHIVE_UNPACKED_BYTES + (1 << 20);
    zero_bomb(&archive, real);
    let mut bytes = std::fs::read(&archive).unwrap();
    assert_eq!(patch_declared_sizes(&mut bytes, real as u32, 100), 2, "both headers patched");
    std::fs::write(&archive, &bytes).unwrap();
    assert_says(&error_of(&archive), "unpacks to more than 64 MiB");
}

#[test]
fn tar_traversal_absolute_paths_and_links_are_refused() {
    let s = Scratch::new();
    let body = GIN_TEXT.as_bytes();
    let regular = |name: &str| raw_header(name, tar::EntryType::Regular, body.len() as u64);
    let cases: Vec<(tar::Header, &str)> = vec![
        (regular("../evil.txt"), "`..`"),
        (regular("ok/../../evil.txt"), "`..`"),
        (regular("/etc/evil.txt"), "absolute"),
        (raw_header("data.txt", tar::EntryType::Symlink, 0), "links are refused"),
        (raw_header("data.txt", tar::EntryType::Link, 0), "links are refused"),
        (raw_header("fifo", tar::EntryType::Fifo, 0), "refused"),
        (raw_header("dev", tar::EntryType::Char, 0), "refused"),
    ];
    for (i, (header, words)) in cases.into_iter().enumerate() {
        let archive = s.path(&format!("t{i}.tar.gz"));
        let content: &[u8] = if header.entry_size().unwrap() == 0 { b"" } else { body };
        write_tar_gz(&archive, &[(header, content)]);
        assert_says(&error_of(&archive), words);
    }
    assert!(!s.dir.path().parent().unwrap().join("evil.txt").exists());
}

#[test]
fn tar_with_a_long_traversing_name_is_refused() {
    // A GNU long-name entry carries the path; the reader must check that one, not the header's.
    let s = Scratch::new();
    let archive = s.path("long.tar.gz");
    let gz = GzEncoder::new(File::create(&archive).unwrap(), Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let long_name = format!("{}/../../../evil.txt", "d".repeat(120));
    let mut header = tar::Header::new_gnu();
    header.set_size(GIN_TEXT.len() as u64);
    header.set_entry_type(tar::EntryType::Regular);
    // append_data refuses `..` itself, so write the long-name record by hand.
    let mut long = tar::Header::new_gnu();
    long.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    long.set_entry_type(tar::EntryType::GNULongName);
    long.set_size(long_name.len() as u64 + 1);
    long.set_cksum();
    let mut name_bytes = long_name.clone().into_bytes();
    name_bytes.push(0);
    tar.append(&long, name_bytes.as_slice()).unwrap();
    header.as_old_mut().name[..8].copy_from_slice(b"short.tx");
    header.set_cksum();
    tar.append(&header, GIN_TEXT.as_bytes()).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    assert_says(&error_of(&archive), "`..`");
}

#[test]
fn tar_with_too_many_entries_is_refused() {
    let s = Scratch::new();
    let archive = s.path("many.tar.gz");
    let entries: Vec<(tar::Header, &[u8])> =
        (0..=MAX_ARCHIVE_ENTRIES).map(|i| (raw_header(&format!("f{i}.bin"), tar::EntryType::Regular, 0), &b""[..])).collect();
    write_tar_gz(&archive, &entries);
    assert_says(&error_of(&archive), &format!("more than {MAX_ARCHIVE_ENTRIES} entries"));
}

#[test]
fn tar_gz_bomb_over_the_unpacked_limit_is_refused() {
    let s = Scratch::new();
    let archive = s.path("bomb.tar.gz");
    let size = MAX_ARCHIVE_UNPACKED_BYTES + (1 << 20);
    let gz = GzEncoder::new(File::create(&archive).unwrap(), Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let header = raw_header("bomb.txt", tar::EntryType::Regular, size);
    tar.append(&header, std::io::Read::take(std::io::repeat(b'0'), size)).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    assert!(std::fs::metadata(&archive).unwrap().len() < (1 << 20), "the bomb should be small");
    assert_says(&error_of(&archive), "unpacks to more than 64 MiB");
}
