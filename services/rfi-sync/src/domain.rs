//! RFI rules as plain functions and parsed input: no network, no database.

use connectability_platform::{
    directory::{Tool, at_least, tool_level},
    errors::invalid_argument,
    input::Id,
};
use connectability_proto::directory::v1::{PermissionLevel, ProjectAccess};
use tonic::Status;

pub const PROJECT: &str = "prj";
pub const RFI: &str = "rfi";
pub const RESPONSE: &str = "rsp";
pub const FILE: &str = "fil";
pub const USER: &str = "usr";
pub const REVISION: &str = "rev";
pub const CONNECTION: &str = "con";

/// Longest subject, question and response.
pub const MAX_SUBJECT: usize = 500;
pub const MAX_TEXT: usize = 20_000;
/// Most users in one list (assignees, distribution) and most attachments per item.
pub const MAX_LIST: usize = 200;

pub mod reason {
    pub const CONNECTED_READ_ONLY: &str = "CONNECTED_READ_ONLY";
    pub const RFI_CLOSED: &str = "RFI_CLOSED";
    pub const RFI_NOT_CLOSED: &str = "RFI_NOT_CLOSED";
    pub const NOT_A_CONNECTED_RFI: &str = "NOT_A_CONNECTED_RFI";
    pub const NO_OFFICIAL_ANSWER: &str = "NO_OFFICIAL_ANSWER";
    pub const LINKED_DRAWING_NOT_FOUND: &str = "LINKED_DRAWING_NOT_FOUND";
    pub const FILE_NOT_IN_PROJECT: &str = "FILE_NOT_IN_PROJECT";
    pub const UNKNOWN_USER: &str = "UNKNOWN_USER";
}

pub use connectability_platform::input::parse_date;
pub use connectability_sync::SyncState;

/// The stored statuses (the proto's RfiStatus values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RfiStatus {
    Open = 1,
    Closed = 2,
    Reopened = 3,
    Deleted = 4,
}

pub fn rfis_level(access: &ProjectAccess) -> PermissionLevel {
    tool_level(access, Tool::Rfis)
}

pub fn is_admin(access: &ProjectAccess) -> bool {
    rfis_level(access) == PermissionLevel::Admin
}

/// READ_ONLY or more: sees RFIs.
pub fn can_view(access: &ProjectAccess) -> bool {
    at_least(rfis_level(access), PermissionLevel::ReadOnly)
}

/// STANDARD or more: creates, responds, uploads, links.
pub fn can_contribute(access: &ProjectAccess) -> bool {
    at_least(rfis_level(access), PermissionLevel::Standard)
}

/// May watch a connection's sync: Connection Manager or RFIs access downstream.
pub fn can_watch_sync(access: &ProjectAccess) -> bool {
    can_view(access)
        || at_least(
            tool_level(access, Tool::ConnectionManager),
            PermissionLevel::ReadOnly,
        )
}

/// The people an RFI names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Participants {
    pub creator_id: String,
    pub manager_id: String,
    pub received_from_id: String,
    pub assignee_ids: Vec<String>,
    pub distribution_ids: Vec<String>,
}

impl Participants {
    /// Sees a private RFI (with RFIS admins).
    pub fn includes(&self, user_id: &str) -> bool {
        self.creator_id == user_id
            || self.manager_id == user_id
            || self.received_from_id == user_id
            || self.assignee_ids.iter().any(|u| u == user_id)
            || self.distribution_ids.iter().any(|u| u == user_id)
    }

    /// Whose company decides whether a private RFI is copied (R2): the creator, the
    /// manager, the assignees and the distribution list.
    pub fn r2_users(&self) -> Vec<String> {
        let mut users = vec![self.creator_id.clone(), self.manager_id.clone()];
        users.extend(self.assignee_ids.iter().cloned());
        users.extend(self.distribution_ids.iter().cloned());
        users.retain(|u| !u.is_empty());
        users.sort();
        users.dedup();
        users
    }

    /// Every named user, for validation.
    pub fn everyone(&self) -> Vec<String> {
        let mut users = self.r2_users();
        if !self.received_from_id.is_empty() {
            users.push(self.received_from_id.clone());
        }
        users.sort();
        users.dedup();
        users
    }
}

/// R1 and R2: an RFI is copied to a downstream company when it is closed and either public
/// or private with a user of that company as creator, manager, assignee or on distribution.
pub fn shared_with(
    status: i64,
    private: bool,
    participant_company_ids: &[String],
    downstream_company_id: &str,
) -> bool {
    status == RfiStatus::Closed as i64
        && (!private
            || participant_company_ids
                .iter()
                .any(|c| c == downstream_company_id))
}

/// A list of ids of one kind, each checked, duplicates removed, order kept.
pub fn parse_ids(prefix: &str, field: &str, raw: &[String]) -> Result<Vec<String>, Status> {
    if raw.len() > MAX_LIST {
        return Err(invalid_argument(
            field,
            format!("at most {MAX_LIST} entries"),
        ));
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

/// An optional user id (empty allowed).
pub fn parse_optional_user(field: &str, raw: &str) -> Result<String, Status> {
    if raw.is_empty() {
        Ok(String::new())
    } else {
        Ok(Id::parse(USER, field, raw)?.to_string())
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
    fn r2_private_rfis_need_a_downstream_participant() {
        let companies = vec!["co_gc".to_string(), "co_sub".to_string()];
        let closed = RfiStatus::Closed as i64;
        assert!(shared_with(closed, false, &[], "co_sub"));
        assert!(shared_with(closed, true, &companies, "co_sub"));
        assert!(!shared_with(closed, true, &companies, "co_other"));
        assert!(!shared_with(
            RfiStatus::Open as i64,
            false,
            &companies,
            "co_sub"
        ));
        assert!(!shared_with(
            RfiStatus::Reopened as i64,
            false,
            &companies,
            "co_sub"
        ));
    }

    #[test]
    fn received_from_does_not_count_for_r2_but_sees_the_rfi() {
        let p = Participants {
            creator_id: "usr_a".into(),
            manager_id: "usr_a".into(),
            received_from_id: "usr_r".into(),
            assignee_ids: vec!["usr_b".into()],
            distribution_ids: vec!["usr_c".into(), "usr_b".into()],
        };
        assert_eq!(p.r2_users(), vec!["usr_a", "usr_b", "usr_c"]);
        assert!(p.includes("usr_r"));
        assert!(!p.includes("usr_x"));
        assert_eq!(p.everyone().len(), 4);
    }

    #[test]
    fn dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_709_164_800_000), "2024-02-29");
        assert!(parse_date("d", "2024-02-29", false).is_ok());
        assert!(parse_date("d", "2023-02-29", false).is_err());
        assert!(parse_date("d", "", true).is_ok());
    }

    #[test]
    fn media_types() {
        assert!(parse_content_type("c", "application/pdf").is_ok());
        assert!(parse_content_type("c", "text/plain; charset=utf-8").is_ok());
        assert!(parse_content_type("c", "pdf").is_err());
        assert!(parse_content_type("c", "").is_err());
    }
}
