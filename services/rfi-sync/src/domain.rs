//! RFI rules as plain functions and parsed input: no network, no database.

use connectability_platform::directory::{Tool, at_least, tool_level};
use connectability_proto::directory::v1::{PermissionLevel, ProjectAccess};
use tonic::Status;

pub const PROJECT: &str = "prj";
pub const RFI: &str = "rfi";
pub const RESPONSE: &str = "rsp";
pub const FILE: &str = "fil";
pub const USER: &str = "usr";
pub const REVISION: &str = "rev";

/// Longest subject, question and response.
pub const MAX_SUBJECT: usize = 500;
pub const MAX_TEXT: usize = 20_000;
/// Most users in one list (assignees, distribution) and most attachments per item.
pub const MAX_LIST: usize = 200;
/// Most bytes of linked drawing files one RFI's linked drawings PDF reads, in all.
pub const MAX_LINKED_DRAWINGS_BYTES: usize = 64 * 1024 * 1024;
/// Longest a close waits for its PDFs to be written (queueing for the PDF workers included).
pub const PDF_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

pub mod reason {
    connectability_platform::reasons!(
        CONNECTED_READ_ONLY,
        RFI_CLOSED,
        RFI_NOT_CLOSED,
        NOT_A_CONNECTED_RFI,
        NO_OFFICIAL_ANSWER,
        LINKED_DRAWING_NOT_FOUND,
        FILE_NOT_IN_PROJECT,
        UNKNOWN_USER,
    );
}

pub use connectability_platform::input::{date_of, parse_content_type, parse_date};

/// A list of user, file or revision ids (at most [`MAX_LIST`]).
pub fn parse_ids(prefix: &str, field: &str, raw: &[String]) -> Result<Vec<String>, Status> {
    connectability_platform::input::parse_ids(prefix, field, raw, MAX_LIST)
}

/// An optional user id (empty allowed).
pub fn parse_optional_user(field: &str, raw: &str) -> Result<String, Status> {
    connectability_platform::input::parse_optional_id(USER, field, raw)
}

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
