//! Bounded line-by-line reading of text inputs, and the field parsers every text loader shares.
//! Each error carries the file and the 1-based line number.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Take};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::limits::{MAX_FILE_BYTES, MAX_LINE_BYTES};
use crate::{Error, Result};

/// Byte order mark some Windows editors put at the start of UTF-8 files; it is not content.
pub(crate) const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// Opens a regular file for reading after checking its size against [`MAX_FILE_BYTES`].
pub(crate) fn open_bounded(path: &Path) -> Result<Take<File>> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::file(path, "file not found"),
        _ => Error::io(path, e),
    })?;
    if !meta.is_file() {
        return Err(Error::file(path, "not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // The size check above can be outrun by a file that grows; the reader stops one byte past
    // the limit so that case is still caught.
    Ok(file.take(MAX_FILE_BYTES + 1))
}

pub(crate) fn too_large(path: &Path) -> Error {
    Error::file(path, format!("file is larger than the {} MiB limit", MAX_FILE_BYTES >> 20))
}

/// Reads a whole file as UTF-8 text, within [`MAX_FILE_BYTES`].
pub(crate) fn read_to_string_bounded(path: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    open_bounded(path)?.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    if bytes.starts_with(UTF8_BOM) {
        bytes.drain(..UTF8_BOM.len());
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count();
        Error::parse(path, line, "not valid UTF-8 text")
    })
}

/// A text file read one line at a time with bounded line length and total size.
pub(crate) struct LineReader {
    path: PathBuf,
    reader: BufReader<Take<File>>,
    line_no: usize,
    bytes_read: u64,
    buf: Vec<u8>,
    /// First blank line seen since the last non-blank one (for [`LineReader::next_record`]).
    pending_blank: Option<usize>,
}

impl LineReader {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(LineReader {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 16, open_bounded(path)?),
            line_no: 0,
            bytes_read: 0,
            buf: Vec::new(),
            pending_blank: None,
        })
    }

    /// Number of the line most recently returned (0 before the first).
    pub fn line_no(&self) -> usize {
        self.line_no
    }

    /// An error at line `line` of this file.
    pub fn error_at(&self, line: usize, message: impl Into<String>) -> Error {
        Error::parse(&self.path, line, message)
    }

    /// The next line without its line ending, with its 1-based number; `None` at end of file.
    pub fn next_line(&mut self) -> Result<Option<(usize, &str)>> {
        if !self.fill_next_line()? {
            return Ok(None);
        }
        match std::str::from_utf8(&self.buf) {
            Ok(s) => Ok(Some((self.line_no, s))),
            Err(_) => Err(self.error_at(self.line_no, "not valid UTF-8 text")),
        }
    }

    /// The next non-blank line, for files where line i describes item i: blank lines are
    /// accepted only at the end of the file, because one in the middle would silently shift
    /// every later line onto the wrong item.
    pub fn next_record(&mut self) -> Result<Option<(usize, &str)>> {
        loop {
            if !self.fill_next_line()? {
                return Ok(None);
            }
            let blank = std::str::from_utf8(&self.buf)
                .map_err(|_| Error::parse(&self.path, self.line_no, "not valid UTF-8 text"))?
                .trim()
                .is_empty();
            if blank {
                self.pending_blank.get_or_insert(self.line_no);
                continue;
            }
            if let Some(blank_line) = self.pending_blank {
                return Err(self.error_at(blank_line, "blank line between data lines"));
            }
            // Checked as UTF-8 just above.
            let text = std::str::from_utf8(&self.buf).unwrap_or_default();
            return Ok(Some((self.line_no, text)));
        }
    }

    /// Reads the next line into `buf` without its line ending; false at end of file.
    fn fill_next_line(&mut self) -> Result<bool> {
        self.buf.clear();
        let mut saw_any = false;
        loop {
            let available = self.reader.fill_buf().map_err(|e| Error::io(&self.path, e))?;
            if available.is_empty() {
                break;
            }
            saw_any = true;
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if self.buf.len() + take > MAX_LINE_BYTES + 1 {
                return Err(Error::parse(
                    &self.path,
                    self.line_no + 1,
                    format!("line is longer than the {} MiB limit", MAX_LINE_BYTES >> 20),
                ));
            }
            self.buf.extend_from_slice(&available[..take]);
            self.reader.consume(take);
            self.bytes_read += take as u64;
            if self.bytes_read > MAX_FILE_BYTES {
                return Err(too_large(&self.path));
            }
            if done {
                break;
            }
        }
        if !saw_any {
            return Ok(false);
        }
        self.line_no += 1;
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        if self.line_no == 1 && self.buf.starts_with(UTF8_BOM) {
            self.buf.drain(..UTF8_BOM.len());
        }
        Ok(true)
    }
}

/// Splits a TU line: comma-separated (the TU convention, spaces allowed around commas) or,
/// when a line has no comma, whitespace-separated.
pub(crate) fn split_fields(line: &str) -> Result<Vec<&str>, String> {
    if line.contains(',') {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if let Some(i) = fields.iter().position(|f| f.is_empty()) {
            return Err(format!("empty field {} in a comma-separated line", i + 1));
        }
        Ok(fields)
    } else {
        Ok(line.split_whitespace().collect())
    }
}

/// Parses one field, describing it as `what` in the error message.
pub(crate) fn parse_field<T: FromStr>(field: &str, what: &str) -> Result<T, String> {
    field.trim().parse::<T>().map_err(|_| format!("{what} must be {}, found {field:?}", kind_of::<T>()))
}

/// Parses a finite float (NaN and infinities are refused: they poison every later sum).
pub(crate) fn parse_finite(field: &str, what: &str) -> Result<f32, String> {
    let value: f64 = parse_field(field, what)?;
    let narrowed = value as f32;
    if !narrowed.is_finite() {
        return Err(format!("{what} must be a finite number, found {field:?}"));
    }
    Ok(narrowed)
}

fn kind_of<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    if name.starts_with('f') {
        "a number"
    } else if name.starts_with('u') {
        "a non-negative integer"
    } else {
        "an integer"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(content).unwrap();
        p
    }

    #[test]
    fn lines_are_numbered_and_stripped_of_crlf_and_bom() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.txt", b"\xef\xbb\xbf1, 2\r\n3,4\n\n5");
        let mut r = LineReader::open(&p).unwrap();
        assert_eq!(r.next_line().unwrap(), Some((1, "1, 2")));
        assert_eq!(r.next_line().unwrap(), Some((2, "3,4")));
        assert_eq!(r.next_line().unwrap(), Some((3, "")));
        assert_eq!(r.next_line().unwrap(), Some((4, "5")));
        assert_eq!(r.line_no(), 4);
        assert_eq!(r.next_line().unwrap(), None);
    }

    #[test]
    fn trailing_blank_records_are_fine_but_inner_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "ok.txt", b"1\n2\n\n  \n");
        let mut r = LineReader::open(&p).unwrap();
        assert_eq!(r.next_record().unwrap(), Some((1, "1")));
        assert_eq!(r.next_record().unwrap(), Some((2, "2")));
        assert_eq!(r.next_record().unwrap(), None);

        let p = write(dir.path(), "bad.txt", b"1\n\n2\n");
        let mut r = LineReader::open(&p).unwrap();
        r.next_record().unwrap();
        let err = r.next_record().unwrap_err().to_string();
        assert!(err.contains("bad.txt:2:") && err.contains("blank line"), "{err}");
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "u.txt", b"1\n\xff\xfe\n");
        let mut r = LineReader::open(&p).unwrap();
        r.next_line().unwrap();
        let err = r.next_line().unwrap_err().to_string();
        assert!(err.contains("u.txt:2:") && err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn overlong_line_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = b"1\n".to_vec();
        content.extend(std::iter::repeat_n(b'7', MAX_LINE_BYTES + 10));
        let p = write(dir.path(), "long.txt", &content);
        let mut r = LineReader::open(&p).unwrap();
        r.next_line().unwrap();
        let err = r.next_line().unwrap_err().to_string();
        assert!(err.contains("long.txt:2:") && err.contains("longer than"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = LineReader::open(&dir.path().join("nope.txt")).err().unwrap().to_string();
        assert!(err.contains("nope.txt") && err.contains("not found"), "{err}");
    }

    #[test]
    fn fields_split_on_commas_or_whitespace() {
        assert_eq!(split_fields("1, 2").unwrap(), vec!["1", "2"]);
        assert_eq!(split_fields("1 2\t3").unwrap(), vec!["1", "2", "3"]);
        assert!(split_fields("1,,2").is_err());
        assert_eq!(parse_field::<u32>("7", "x").unwrap(), 7);
        assert!(parse_field::<u32>("-1", "node id").unwrap_err().contains("non-negative"));
        assert!(parse_finite("nan", "attribute").unwrap_err().contains("finite"));
        assert!(parse_finite("1e300", "attribute").unwrap_err().contains("finite"));
        assert_eq!(parse_finite("0.5", "attribute").unwrap(), 0.5);
    }
}
