//! File formats recognised by content, never by name: a pickle named `model.safetensors` is
//! still a pickle.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// 8-byte little-endian header length followed by a JSON object.
    Safetensors,
    /// A Python pickle stream (protocol 2+ starts with the PROTO opcode 0x80).
    Pickle,
    /// A zip archive (also what `torch.save` writes: pickles inside a zip).
    Zip,
    Gzip,
    /// Text starting with `{` or `[` after whitespace.
    Json,
    /// Other printable text (the GIN text format).
    Text,
    Unknown,
}

pub fn sniff(head: &[u8]) -> Sniffed {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Sniffed::Zip;
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Sniffed::Gzip;
    }
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Sniffed::Pickle;
    }
    if head.len() >= 9 {
        let n = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
        if (2..(1 << 32)).contains(&n) && head[8] == b'{' {
            return Sniffed::Safetensors;
        }
    }
    let text = head.iter().all(|&b| b == b'\t' || b == b'\n' || b == b'\r' || (0x20..0x7f).contains(&b) || b >= 0x80);
    if !head.is_empty() && text {
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | Some(b'[') => return Sniffed::Json,
            _ => {}
        }
        // Protocol 0/1 pickles are text too, but always end with the STOP opcode '.' after
        // opcodes such as "(dp0" / "cbuiltins"; GIN text is digits and spaces.
        if looks_like_text_pickle(head) {
            return Sniffed::Pickle;
        }
        return Sniffed::Text;
    }
    Sniffed::Unknown
}

fn looks_like_text_pickle(head: &[u8]) -> bool {
    let s = String::from_utf8_lossy(head);
    let first = s.chars().next().unwrap_or(' ');
    matches!(first, '(' | 'c' | ']' | '}' | 'I' | 'S' | 'V') && !s.trim_start().starts_with(|c: char| c.is_ascii_digit())
}

/// A short human name for error messages.
pub fn describe(kind: Sniffed) -> &'static str {
    match kind {
        Sniffed::Safetensors => "safetensors",
        Sniffed::Pickle => "a Python pickle",
        Sniffed::Zip => "a zip archive",
        Sniffed::Gzip => "gzip data",
        Sniffed::Json => "JSON",
        Sniffed::Text => "text",
        Sniffed::Unknown => "unrecognised binary data",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_formats_by_content() {
        let mut st = 20u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{\"__metadata__\":{}}");
        assert_eq!(sniff(&st), Sniffed::Safetensors);
        assert_eq!(sniff(b"\x80\x04\x95\x10\x00\x00"), Sniffed::Pickle);
        assert_eq!(sniff(b"(dp0\nS'a'\np1\n."), Sniffed::Pickle);
        assert_eq!(sniff(b"PK\x03\x04rest"), Sniffed::Zip);
        assert_eq!(sniff(b"\x1f\x8b\x08\x00"), Sniffed::Gzip);
        assert_eq!(sniff(b"  {\"format\": 1}"), Sniffed::Json);
        assert_eq!(sniff(b"188\n17 0\n"), Sniffed::Text);
        assert_eq!(sniff(b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"), Sniffed::Unknown);
    }
}
