//! gRPC statuses with machine-readable details, the same way in every service.

use std::fmt::Display;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every Connectability error.
pub const ERROR_DOMAIN: &str = "connectability";

/// The most characters of a client's own input an error message echoes. A status travels in
/// HTTP/2 trailers: echoing a 100,000-character field whole made the client's HTTP/2 layer
/// drop the connection ("header list too large"), taking every call on it along.
pub const MAX_ECHO_CHARS: usize = 200;

/// `text` cut to [`MAX_ECHO_CHARS`] characters, marked where it was cut.
pub fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => text.to_string(),
        Some((at, _)) => format!(
            "{}… ({} characters in all)",
            &text[..at],
            text.chars().count()
        ),
    }
}

/// INVALID_ARGUMENT naming the field, with a `BadRequest` field violation.
pub fn invalid_argument(field: &str, description: impl Display) -> Status {
    let field = bounded(field);
    let field = field.as_str();
    let description = bounded(&description.to_string());
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

/// FAILED_PRECONDITION with an `ErrorInfo` whose `reason` clients can match on.
pub fn failed_precondition(reason: &str, message: impl Display) -> Status {
    Status::with_error_details(
        Code::FailedPrecondition,
        message.to_string(),
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new()),
    )
}

/// FAILED_PRECONDITION for several broken rules at once: `ErrorInfo.reason` is the first,
/// `ErrorInfo.metadata["reasons"]` lists all (comma-separated), the message explains each.
pub fn failed_preconditions(violations: &[(&str, String)]) -> Status {
    let Some((first, _)) = violations.first() else {
        return internal("failed_preconditions called without a violation");
    };
    let reasons: Vec<&str> = violations.iter().map(|(r, _)| *r).collect();
    let message = violations
        .iter()
        .map(|(r, m)| format!("{r}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    Status::with_error_details(
        Code::FailedPrecondition,
        message,
        ErrorDetails::with_error_info(
            *first,
            ERROR_DOMAIN,
            std::collections::HashMap::from([("reasons".to_string(), reasons.join(","))]),
        ),
    )
}

/// All reasons of a status from [`failed_preconditions`] (or its single reason).
pub fn reasons(status: &Status) -> Vec<String> {
    match status.get_details_error_info() {
        Some(info) => match info.metadata.get("reasons") {
            Some(all) => all.split(',').map(str::to_string).collect(),
            None => vec![info.reason],
        },
        None => Vec::new(),
    }
}

/// NOT_FOUND that says nothing about whether the thing exists for someone else.
pub fn not_found(what: &str, id: &str) -> Status {
    Status::not_found(format!("{what} `{}` not found", bounded(id)))
}

pub fn permission_denied(message: impl Display) -> Status {
    Status::permission_denied(message.to_string())
}

/// INTERNAL for failures the caller cannot fix; the cause goes to the log, not the wire.
pub fn internal(error: impl Display) -> Status {
    tracing::error!(error = %error, "internal error");
    Status::internal("internal error")
}

/// Reads the `ErrorInfo.reason` of a status, if it has one (clients and tests).
pub fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|i| i.reason)
}

/// Reads the first `BadRequest` field violation of a status, if any.
pub fn bad_field(status: &Status) -> Option<String> {
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.into_iter().next())
        .map(|v| v.field)
}

/// Declares a service's `ErrorInfo` reasons as `&str` constants named as they read, and a
/// unit test that each is a value of `connectability.errors.v1.ErrorReason`, the list
/// clients discover by reflection.
#[macro_export]
macro_rules! reasons {
    ($($name:ident),+ $(,)?) => {
        $(pub const $name: &str = stringify!($name);)+

        /// Every reason declared here.
        pub const ALL: &[&str] = &[$(stringify!($name)),+];

        #[cfg(test)]
        #[test]
        fn every_reason_is_declared_in_the_protos() {
            for r in ALL {
                assert!(
                    connectability_proto::errors::v1::ErrorReason::from_str_name(r).is_some(),
                    "{r} is not a value of connectability.errors.v1.ErrorReason"
                );
            }
        }
    };
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn echoed_input_is_bounded() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(100_000);
        let cut = bounded(&long);
        assert!(cut.chars().count() < MAX_ECHO_CHARS + 40, "{}", cut.len());
        assert!(cut.ends_with("(100000 characters in all)"));
        let status = invalid_argument("update_mask", format!("`{long}` is not a field"));
        assert!(status.message().len() < 1_000);
    }
}
