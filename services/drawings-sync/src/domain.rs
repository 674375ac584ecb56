//! Drawings rules as plain functions and parsed input: no network, no database.

use connectability_platform::directory::{Tool, at_least, tool_level};
use connectability_proto::directory::v1::{PermissionLevel, ProjectAccess};

pub const PROJECT: &str = "prj";
pub const AREA: &str = "area";
pub const SET: &str = "dset";
pub const DRAWING: &str = "dwg";
pub const REVISION: &str = "rev";
pub const FILE: &str = "fil";
pub const MARKUP: &str = "mku";
pub const PUBLISH: &str = "pub";
pub const USER: &str = "usr";

/// C17: the documented limit of published revisions for a DRAWINGS connection.
pub const MAX_CONNECTED_REVISIONS: i64 = 100_000;

/// Revisions one `PublishDrawingRevisions` call may name. One call is one publish: one
/// event (whose ids must fit the bus's 1 MiB message limit with room to spare, about
/// 80 bytes an id) and one answer listing them; larger sets are published in several calls.
pub const MAX_PUBLISH_REVISIONS: usize = 5_000;

pub mod reason {
    connectability_platform::reasons!(
        CONNECTED_READ_ONLY,
        CONNECTED_AREA_READ_ONLY,
        CONNECTED_SET_READ_ONLY,
    );
}

pub use connectability_sync::SyncState;

/// The caller's level on the project's Drawings tool.
pub fn drawings_level(access: &ProjectAccess) -> PermissionLevel {
    tool_level(access, Tool::Drawings)
}

pub fn is_admin(access: &ProjectAccess) -> bool {
    drawings_level(access) == PermissionLevel::Admin
}

/// READ_ONLY or more: sees published drawings.
pub fn can_view(access: &ProjectAccess) -> bool {
    at_least(drawings_level(access), PermissionLevel::ReadOnly)
}

/// Whether someone with `access` sees a revision in Drawings: viewers see published
/// revisions of live drawings; admins also unpublished ones; nobody a deleted drawing's.
pub fn revision_visible(access: &ProjectAccess, published: bool, drawing_deleted: bool) -> bool {
    can_view(access) && !drawing_deleted && (published || is_admin(access))
}

/// STANDARD or more: marks up (D7).
pub fn can_mark_up(access: &ProjectAccess) -> bool {
    at_least(drawings_level(access), PermissionLevel::Standard)
}

pub use connectability_platform::input::parse_date;

/// A PDF starts with `%PDF-`.
pub fn looks_like_pdf(first_bytes: &[u8]) -> bool {
    first_bytes.starts_with(b"%PDF-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_calendar_dates() {
        assert!(parse_date("d", "2024-02-29", false).is_ok());
        assert!(parse_date("d", "2023-02-29", false).is_err());
        assert!(parse_date("d", "2024-13-01", false).is_err());
        assert!(parse_date("d", "24-01-01", false).is_err());
        assert!(parse_date("d", "", true).is_ok());
        assert!(parse_date("d", "", false).is_err());
    }

    #[test]
    fn pdfs_are_recognised() {
        assert!(looks_like_pdf(b"%PDF-1.7\n..."));
        assert!(!looks_like_pdf(b"PK\x03\x04"));
    }
}
