//! AIP-158 pagination: `page_size` (default 50, at most 1000) and an opaque `page_token`
//! that carries the last key of the previous page (lists are ordered by that key).

use tonic::Status;

use crate::errors::invalid_argument;

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: i64,
    /// Return keys strictly after this one ("" = from the start).
    pub after: String,
}

impl PageRequest {
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, Status> {
        let size = match i64::from(page_size) {
            n if n < 0 => return Err(invalid_argument("page_size", "must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            String::new()
        } else {
            decode_token(page_token)
                .ok_or_else(|| invalid_argument("page_token", "not a token from a previous page"))?
        };
        Ok(Self { size, after })
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts the extra row off and returns the token for the next page ("" when none).
    pub fn finish<T>(&self, rows: &mut Vec<T>, key: impl Fn(&T) -> &str) -> String {
        self.finish_with(rows, |r| key(r).to_string())
    }

    /// [`PageRequest::finish`] for lists ordered by a key built from each row.
    pub fn finish_with<T>(&self, rows: &mut Vec<T>, key: impl Fn(&T) -> String) -> String {
        if rows.len() as i64 > self.size {
            rows.truncate(self.size as usize);
            rows.last()
                .map(|r| encode_token(&key(r)))
                .unwrap_or_default()
        } else {
            String::new()
        }
    }
}

const TOKEN_PREFIX: &str = "p1";

fn encode_token(key: &str) -> String {
    let mut out = String::from(TOKEN_PREFIX);
    for b in key.as_bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn decode_token(token: &str) -> Option<String> {
    let hex = token.strip_prefix(TOKEN_PREFIX)?;
    if hex.len() % 2 != 0 || hex.is_empty() {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_and_cap() {
        assert_eq!(PageRequest::parse(0, "").unwrap().size, 50);
        assert_eq!(PageRequest::parse(5000, "").unwrap().size, 1000);
        assert!(PageRequest::parse(-1, "").is_err());
        assert!(PageRequest::parse(10, "garbage").is_err());
    }

    #[test]
    fn tokens_round_trip() {
        let page = PageRequest::parse(2, "").unwrap();
        let mut rows = vec!["a", "b", "c"];
        let token = page.finish(&mut rows, |r| r);
        assert_eq!(rows, vec!["a", "b"]);
        assert_eq!(PageRequest::parse(2, &token).unwrap().after, "b");
        let mut last = vec!["c"];
        assert_eq!(page.finish(&mut last, |r| r), "");
    }
}
