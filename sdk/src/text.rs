//! Text helpers for length limits that count characters, not bytes.

/// The ellipsis appended to truncated text.
pub const ELLIPSIS: char = '…';

/// Truncates `text` to at most `max_chars` characters (Unicode scalar
/// values). Text that was cut ends with [`ELLIPSIS`], which counts towards the
/// limit. Text within the limit is returned unchanged.
pub fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some(_) if max_chars == 0 => String::new(),
        Some(_) => {
            let keep = text
                .char_indices()
                .nth(max_chars - 1)
                .map_or(text.len(), |(i, _)| i);
            let mut out = String::with_capacity(keep + ELLIPSIS.len_utf8());
            out.push_str(&text[..keep]);
            out.push(ELLIPSIS);
            out
        }
    }
}

/// Like [`truncate`], but cuts at a limit in UTF-8 bytes (never inside a
/// character); the ellipsis (3 bytes) counts towards the limit.
pub fn truncate_bytes(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let budget = max_bytes.saturating_sub(ELLIPSIS.len_utf8());
    if budget == 0 {
        return String::new();
    }
    let mut keep = budget;
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    let mut out = String::with_capacity(keep + ELLIPSIS.len_utf8());
    out.push_str(&text[..keep]);
    out.push(ELLIPSIS);
    out
}

/// Collapses line breaks and tabs into spaces and trims (for one-line titles).
pub fn one_line(text: &str) -> String {
    if !text.bytes().any(|b| matches!(b, b'\n' | b'\r' | b'\t')) {
        return text.trim().to_string();
    }
    text.split(['\n', '\r', '\t'])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

/// Number of characters (Unicode scalar values) in `text`.
pub fn char_len(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_counts_chars() {
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello", 4), "hel…");
        assert_eq!(truncate("hello", 1), "…");
        assert_eq!(truncate("hello", 0), "");
        assert_eq!(truncate("", 0), "");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(char_len(&truncate(&"🦀".repeat(200), 150)), 150);
    }

    #[test]
    fn truncate_bytes_respects_boundaries() {
        assert_eq!(truncate_bytes("hello", 5), "hello");
        assert_eq!(truncate_bytes("hello", 4), "h…");
        assert_eq!(truncate_bytes("hello", 3), "");
        let s = truncate_bytes(&"é".repeat(10), 8);
        assert!(s.len() <= 8, "{s}");
        assert_eq!(s, "éé…");
    }

    #[test]
    fn one_line_joins_lines_and_trims_with_or_without_breaks() {
        assert_eq!(one_line("  plain title "), "plain title");
        assert_eq!(one_line(""), "");
        assert_eq!(one_line("a\n\nb\r\n\tc"), "a b c");
        assert_eq!(one_line("\n\t"), "");
    }
}
