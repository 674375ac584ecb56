//! Submittal rules as plain functions and parsed input: no network, no database.

use connectability_platform::directory::{Tool, at_least, tool_level};
use connectability_proto::directory::v1::{PermissionLevel, ProjectAccess};
use serde::{Deserialize, Serialize};
use tonic::Status;

pub use connectability_platform::input::{date_of, parse_content_type, parse_date};
pub use connectability_sync::SyncState;

pub const PROJECT: &str = "prj";
pub const SUBMITTAL: &str = "sub";
pub const DISTRIBUTION: &str = "dst";
pub const FILE: &str = "fil";
pub const USER: &str = "usr";

/// Longest title and longest description, comment or message.
pub const MAX_TITLE: usize = 500;
pub const MAX_TEXT: usize = 20_000;
/// Most users in one list and most attachments per item.
pub const MAX_LIST: usize = 200;

pub mod reason {
    connectability_platform::reasons!(
        CONNECTED_READ_ONLY,
        SUBMITTAL_CLOSED,
        SUBMITTAL_NOT_CLOSED,
        NOT_AN_APPROVER,
        NOT_YOUR_TURN,
        ATTACHMENT_NOT_IN_SUBMITTAL,
        NOT_A_CONNECTED_SUBMITTAL,
        FILE_NOT_IN_PROJECT,
    );
}

/// The stored statuses (the proto's SubmittalStatus values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmittalStatus {
    Open = 1,
    Closed = 2,
    Reopened = 3,
    Deleted = 4,
}

/// One approver of the current revision and their answer (the proto's ApproverResponse
/// value; 0 until they answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub user_id: String,
    pub response: i32,
    pub comment: String,
    pub attachment_file_ids: Vec<String>,
    pub respond_ms: Option<i64>,
}

/// A submittal's general information (what a distribution carries, S2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct General {
    pub title: String,
    pub specification_section: String,
    pub kind: String,
    pub description: String,
    pub manager_id: String,
    pub submitter_id: String,
    pub responsible_contractor: String,
    pub approvers: Vec<Approver>,
    pub distribution_ids: Vec<String>,
    pub due_date: String,
    pub received_date: String,
}

/// `g` as a copy shows it: each approver's attachments replaced by their copies, through
/// `copies` (which leaves out files that were not copied: S4, only the attachments a
/// distribution selected reach the downstream project).
pub fn general_with_files(g: &General, copies: impl Fn(&[String]) -> Vec<String>) -> General {
    General {
        approvers: g
            .approvers
            .iter()
            .map(|a| Approver {
                attachment_file_ids: copies(&a.attachment_file_ids),
                ..a.clone()
            })
            .collect(),
        ..g.clone()
    }
}

impl General {
    /// The users whose company decides whether the submittal is copied (S1), with the
    /// recipients of its distributions.
    pub fn s1_users(&self, recipients: &[String]) -> Vec<String> {
        let mut users = vec![self.manager_id.clone(), self.submitter_id.clone()];
        users.extend(self.approvers.iter().map(|a| a.user_id.clone()));
        users.extend(self.distribution_ids.iter().cloned());
        users.extend(recipients.iter().cloned());
        users.retain(|u| !u.is_empty());
        users.sort();
        users.dedup();
        users
    }

    /// The approver whose turn it is: the first without an answer.
    pub fn next_approver(&self) -> Option<&Approver> {
        self.approvers.iter().find(|a| a.response == 0)
    }
}

/// S1: a submittal is copied to a downstream company once distributed, when one of that
/// company's users is its manager, submitter, an approver or on a distribution list.
pub fn shared_with(
    distributed: bool,
    participant_company_ids: &[String],
    downstream_company_id: &str,
) -> bool {
    distributed
        && participant_company_ids
            .iter()
            .any(|c| c == downstream_company_id)
}

pub fn level(access: &ProjectAccess) -> PermissionLevel {
    tool_level(access, Tool::Submittals)
}

pub fn is_admin(access: &ProjectAccess) -> bool {
    level(access) == PermissionLevel::Admin
}

pub fn can_view(access: &ProjectAccess) -> bool {
    at_least(level(access), PermissionLevel::ReadOnly)
}

pub fn can_contribute(access: &ProjectAccess) -> bool {
    at_least(level(access), PermissionLevel::Standard)
}

/// A list of user or file ids (at most [`MAX_LIST`]).
pub fn parse_ids(prefix: &str, field: &str, raw: &[String]) -> Result<Vec<String>, Status> {
    connectability_platform::input::parse_ids(prefix, field, raw, MAX_LIST)
}

/// An optional user id (empty allowed).
pub fn parse_optional_user(field: &str, raw: &str) -> Result<String, Status> {
    connectability_platform::input::parse_optional_id(USER, field, raw)
}

/// One line per approver for a distribution's summary.
pub fn responses_summary(approvers: &[Approver], label: fn(i32) -> &'static str) -> Vec<String> {
    approvers
        .iter()
        .map(|a| {
            let comment = if a.comment.is_empty() {
                String::new()
            } else {
                format!(": {}", a.comment)
            };
            format!("{} - {}{comment}", a.user_id, label(a.response))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn general() -> General {
        General {
            manager_id: "usr_m".into(),
            submitter_id: "usr_s".into(),
            approvers: vec![
                Approver {
                    user_id: "usr_a1".into(),
                    response: 1,
                    ..Default::default()
                },
                Approver {
                    user_id: "usr_a2".into(),
                    ..Default::default()
                },
            ],
            distribution_ids: vec!["usr_d".into(), "usr_m".into()],
            ..Default::default()
        }
    }

    #[test]
    fn s1_participants_and_distribution() {
        let g = general();
        assert_eq!(
            g.s1_users(&["usr_r".into()]),
            vec!["usr_a1", "usr_a2", "usr_d", "usr_m", "usr_r", "usr_s"]
        );
        let companies = vec!["co_gc".to_string(), "co_sub".to_string()];
        assert!(shared_with(true, &companies, "co_sub"));
        assert!(!shared_with(false, &companies, "co_sub"));
        assert!(!shared_with(true, &companies, "co_other"));
    }

    #[test]
    fn approvers_answer_in_order() {
        assert_eq!(general().next_approver().unwrap().user_id, "usr_a2");
    }
}
