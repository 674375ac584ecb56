//! Parsed request input shared by every service: resource ids, names, request ids.
//! Each parser answers INVALID_ARGUMENT naming the field.

use tonic::Status;

use crate::errors::invalid_argument;

/// A validated resource id: `<prefix>_` then 1-64 lower-case letters, digits or `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(String);

impl Id {
    pub fn parse(prefix: &str, field: &str, raw: &str) -> Result<Id, Status> {
        let suffix = raw
            .strip_prefix(prefix)
            .and_then(|s| s.strip_prefix('_'))
            .ok_or_else(|| {
                if raw.is_empty() {
                    invalid_argument(field, "is required")
                } else {
                    invalid_argument(field, format!("`{raw}` is not a `{prefix}_…` id"))
                }
            })?;
        let ok = !suffix.is_empty()
            && suffix.len() <= 64
            && suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(invalid_argument(
                field,
                format!("`{raw}` is not a `{prefix}_…` id (lower-case letters, digits, `_`)"),
            ));
        }
        Ok(Id(raw.to_string()))
    }

    /// A fresh, time-ordered id.
    pub fn generate(prefix: &str) -> Id {
        Id(format!("{prefix}_{}", uuid::Uuid::now_v7().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A required, trimmed, single-line name of at most 200 characters.
pub fn parse_name(field: &str, raw: &str) -> Result<String, Status> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(invalid_argument(field, "must not be empty"));
    }
    if name.chars().count() > 200 {
        return Err(invalid_argument(field, "must be at most 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid_argument(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name.to_string())
}

/// An optional request id (AIP-155): at most 128 printable ASCII characters.
pub fn parse_request_id(raw: &str) -> Result<Option<String>, Status> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > 128 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid_argument(
            "request_id",
            "must be at most 128 printable ASCII characters",
        ));
    }
    Ok(Some(raw.to_string()))
}

/// Optional free text (a reason, a message) of at most `max` characters, trimmed.
pub fn parse_text(field: &str, raw: &str, max: usize) -> Result<String, Status> {
    let text = raw.trim();
    if text.chars().count() > max {
        return Err(invalid_argument(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(text.to_string())
}

/// A calendar date `YYYY-MM-DD`; empty is allowed when `optional`.
pub fn parse_date(field: &str, raw: &str, optional: bool) -> Result<String, Status> {
    if raw.is_empty() && optional {
        return Ok(String::new());
    }
    let bad = || invalid_argument(field, format!("`{raw}` is not a date YYYY-MM-DD"));
    let parts: Vec<&str> = raw.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (y, m, d): (u32, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if d == 0 || d > days || y < 1900 {
        return Err(bad());
    }
    Ok(raw.to_string())
}

/// A list of ids of one kind, each checked, duplicates removed, order kept.
pub fn parse_ids(
    prefix: &str,
    field: &str,
    raw: &[String],
    max: usize,
) -> Result<Vec<String>, Status> {
    if raw.len() > max {
        return Err(invalid_argument(field, format!("at most {max} entries")));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, id) in raw.iter().enumerate() {
        let id = Id::parse(prefix, &format!("{field}[{i}]"), id)?.to_string();
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// An optional id of one kind (empty allowed).
pub fn parse_optional_id(prefix: &str, field: &str, raw: &str) -> Result<String, Status> {
    if raw.is_empty() {
        Ok(String::new())
    } else {
        Ok(Id::parse(prefix, field, raw)?.to_string())
    }
}

/// Today (UTC) as `YYYY-MM-DD`, from Unix milliseconds.
pub fn date_of(ms: i64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm): no calendar crate needed for one date.
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A content type `type/subtype` (parameters allowed).
pub fn parse_content_type(field: &str, raw: &str) -> Result<String, Status> {
    let essence = raw.split(';').next().unwrap_or_default().trim();
    let ok = essence.split_once('/').is_some_and(|(t, s)| {
        let token = |x: &str| {
            !x.is_empty()
                && x.len() <= 127
                && x.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
        };
        token(t) && token(s)
    });
    if ok {
        Ok(raw.trim().to_string())
    } else {
        Err(invalid_argument(
            field,
            format!("`{raw}` is not a media type like application/pdf"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(Id::parse("prj", "id", "prj_tower1").is_ok());
        assert!(Id::parse("prj", "id", "co_tower").is_err());
        assert!(Id::parse("prj", "id", "prj_").is_err());
        assert!(Id::parse("prj", "id", "prj_Tower").is_err());
        assert!(Id::parse("prj", "id", "").is_err());
        let generated = Id::generate("usr");
        assert!(Id::parse("usr", "id", generated.as_str()).is_ok());
    }

    #[test]
    fn names_and_texts_are_checked() {
        assert_eq!(parse_name("name", "  Tower ").unwrap(), "Tower");
        assert!(parse_name("name", " ").is_err());
        assert!(parse_text("reason", &"x".repeat(11), 10).is_err());
        assert!(parse_request_id("a b").is_err());
    }
}
