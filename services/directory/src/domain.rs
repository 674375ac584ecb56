//! Directory rules as plain functions and parsed input types: nothing here touches the
//! network or the database.

use connectability_auth::Caller;
use connectability_platform::errors::invalid_argument;
pub use connectability_platform::input::{Id, parse_name, parse_request_id};
use connectability_proto::directory::v1 as pb;
use tonic::Status;

pub const COMPANY: &str = "co";
pub const PROJECT: &str = "prj";
pub const USER: &str = "usr";

/// The ErrorInfo reasons clients match on.
pub mod reason {
    connectability_platform::reasons!(USER_NOT_IN_COMPANY);
}

/// A file storage location such as `us-east`: 2-32 lower-case letters, digits and `-`.
pub fn parse_storage_location(raw: &str) -> Result<String, Status> {
    let ok = (2..=32).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(invalid_argument(
            "storage_location",
            format!("`{raw}` is not a storage location like `us-east` (2-32 of a-z, 0-9, -)"),
        ))
    }
}

pub fn parse_email(raw: &str) -> Result<String, Status> {
    let email = raw.trim().to_ascii_lowercase();
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && email.len() <= 254
                && !email.contains(char::is_whitespace) =>
        {
            Ok(email)
        }
        _ => Err(invalid_argument(
            "email",
            format!("`{raw}` is not an email address"),
        )),
    }
}

/// One level per tool, all set (UNSPECIFIED resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolLevels {
    pub connection_manager: pb::PermissionLevel,
    pub drawings: pb::PermissionLevel,
    pub rfis: pb::PermissionLevel,
    pub submittals: pb::PermissionLevel,
}

impl ToolLevels {
    pub const NONE: ToolLevels = ToolLevels {
        connection_manager: pb::PermissionLevel::None,
        drawings: pb::PermissionLevel::None,
        rfis: pb::PermissionLevel::None,
        submittals: pb::PermissionLevel::None,
    };

    /// Applies requested levels over `base`: UNSPECIFIED keeps the base level, an unknown
    /// number is INVALID_ARGUMENT naming `permissions.<tool>`.
    pub fn apply(
        base: ToolLevels,
        requested: Option<&pb::ToolPermissions>,
    ) -> Result<ToolLevels, Status> {
        let Some(req) = requested else {
            return Ok(base);
        };
        let pick = |field: &str,
                    raw: i32,
                    current: pb::PermissionLevel|
         -> Result<pb::PermissionLevel, Status> {
            match pb::PermissionLevel::try_from(raw) {
                Ok(pb::PermissionLevel::Unspecified) => Ok(current),
                Ok(level) => Ok(level),
                Err(_) => Err(invalid_argument(
                    &format!("permissions.{field}"),
                    format!("{raw} is not a PermissionLevel"),
                )),
            }
        };
        Ok(ToolLevels {
            connection_manager: pick(
                "connection_manager",
                req.connection_manager,
                base.connection_manager,
            )?,
            drawings: pick("drawings", req.drawings, base.drawings)?,
            rfis: pick("rfis", req.rfis, base.rfis)?,
            submittals: pick("submittals", req.submittals, base.submittals)?,
        })
    }

    pub fn to_proto(self) -> pb::ToolPermissions {
        pb::ToolPermissions {
            connection_manager: self.connection_manager as i32,
            drawings: self.drawings as i32,
            rfis: self.rfis as i32,
            submittals: self.submittals as i32,
        }
    }
}

/// The services that call the directory (every other one); no other service identity may.
pub const CALLING_SERVICES: &[&str] = &[
    "connection-manager",
    "drawings-sync",
    "rfi-sync",
    "submittal-sync",
    "notification",
];

/// Who is calling, as the directory knows them.
#[derive(Debug, Clone)]
pub enum Principal {
    Operator(String),
    Service(String),
    User {
        id: String,
        company_id: String,
        /// Admin of their own company (the only company a user can administer).
        company_admin: bool,
    },
}

impl Principal {
    pub fn actor_id(&self) -> &str {
        match self {
            Principal::Operator(n) | Principal::Service(n) => n,
            Principal::User { id, .. } => id,
        }
    }

    /// Operators and services see every record.
    pub fn sees_everything(&self) -> bool {
        matches!(self, Principal::Operator(_) | Principal::Service(_))
    }

    /// May create projects and users in, and appoint admins of, company `company_id`;
    /// may manage the directories of its projects (Y2).
    pub fn manages_company(&self, company_id: &str) -> bool {
        match self {
            Principal::Operator(_) => true,
            Principal::Service(_) => false,
            Principal::User {
                company_id: own,
                company_admin,
                ..
            } => *company_admin && own == company_id,
        }
    }

    /// May see project `project` (Y3): operators, services, its members, and company admins
    /// of the company that owns it.
    pub fn sees_project(&self, project_company_id: &str, is_member: bool) -> bool {
        self.sees_everything() || is_member || self.manages_company(project_company_id)
    }

    /// May ask what `user_id` may do: services, operators, and the user about themselves.
    pub fn may_query_access_of(&self, user_id: &str) -> bool {
        match self {
            Principal::Operator(_) | Principal::Service(_) => true,
            Principal::User { id, .. } => id == user_id,
        }
    }
}

/// The caller's id for `request_ids` scopes and events.
pub fn caller_kind(caller: &Caller) -> &'static str {
    match caller {
        Caller::User { .. } => "user",
        Caller::Operator { .. } => "operator",
        Caller::Service { .. } => "service",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_apply_over_base() {
        let req = pb::ToolPermissions {
            drawings: pb::PermissionLevel::Admin as i32,
            ..Default::default()
        };
        let levels = ToolLevels::apply(ToolLevels::NONE, Some(&req)).unwrap();
        assert_eq!(levels.drawings, pb::PermissionLevel::Admin);
        assert_eq!(levels.rfis, pb::PermissionLevel::None);
        let bad = pb::ToolPermissions {
            rfis: 42,
            ..Default::default()
        };
        let err = ToolLevels::apply(ToolLevels::NONE, Some(&bad)).unwrap_err();
        assert!(err.message().starts_with("permissions.rfis"));
    }

    #[test]
    fn company_admins_manage_only_their_company() {
        let admin = Principal::User {
            id: "usr_a".into(),
            company_id: "co_a".into(),
            company_admin: true,
        };
        assert!(admin.manages_company("co_a"));
        assert!(!admin.manages_company("co_b"));
        assert!(admin.sees_project("co_a", false));
        assert!(!admin.sees_project("co_b", false));
        assert!(admin.sees_project("co_b", true));
    }
}
