//! The notification matrix (N1-N7) as a plain function: which project lists hear about an
//! event, and what the message says. No network, no database.

use connectability_proto::{directory::v1::Tool, notifications::v1::NotificationKind as Kind};

/// The names a message shows, looked up before planning.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub upstream_project: String,
    pub upstream_company: String,
    pub downstream_project: String,
    pub downstream_company: String,
}

/// What happened, from the events this service consumes.
#[derive(Debug, Clone)]
pub enum Happened {
    Requested { requires_review: bool },
    Rejected { message: String },
    Created,
    Disconnected { reason: String },
    InitialSyncComplete { drawings: i64, revisions: i64 },
    InitialRfiSyncComplete { rfis: i64 },
    InitialSubmittalSyncComplete { submittals: i64 },
    DrawingsPublished { revisions: i64 },
    DrawingsDeleted { numbers: Vec<String> },
}

/// Which side's list a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Upstream,
    Downstream,
}

/// One message to one project's list for one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub side: Side,
    pub tool: Tool,
    pub kind: Kind,
    pub subject: String,
    pub body: String,
}

fn msg(side: Side, tool: Tool, kind: Kind, subject: String, body: String) -> Planned {
    Planned {
        side,
        tool,
        kind,
        subject,
        body,
    }
}

/// The matrix: N1 requested (when review is required), N2 rejected, N3 created, N4
/// disconnected, N5 initial sync complete (drawings, RFIs, submittals), N6 drawings published, N7 drawings deleted.
pub fn plan(what: &Happened, n: &Names) -> Vec<Planned> {
    let cm = Tool::ConnectionManager;
    let link = format!(
        "{} ({}) -> {} ({})",
        n.upstream_project, n.upstream_company, n.downstream_project, n.downstream_company
    );
    match what {
        // Auto-approved requests are announced as created connections (N3) instead.
        Happened::Requested { requires_review: false } => vec![],
        Happened::Requested { requires_review: true } => vec![
            msg(
                Side::Upstream,
                cm,
                Kind::ConnectionRequestToReview,
                format!("Connection request from {} ready to review", n.downstream_company),
                format!("{} asks to connect {} to your project {}. Review it in the Connection Manager.\n\n{link}", n.downstream_company, n.downstream_project, n.upstream_project),
            ),
            msg(
                Side::Downstream,
                cm,
                Kind::ConnectionRequestSent,
                format!("Connection request sent to {}", n.upstream_company),
                format!("Your request to connect {} to {} of {} was sent for review.\n\n{link}", n.downstream_project, n.upstream_project, n.upstream_company),
            ),
        ],
        Happened::Rejected { message } => vec![msg(
            Side::Downstream,
            cm,
            Kind::ConnectionRejected,
            format!("{} rejected your connection request", n.upstream_company),
            format!("The request to connect {} to {} was rejected.{}\n\n{link}", n.downstream_project, n.upstream_project, if message.is_empty() { String::new() } else { format!(" Message: {message}") }),
        )],
        Happened::Created => [Side::Upstream, Side::Downstream]
            .into_iter()
            .map(|side| {
                msg(
                    side,
                    cm,
                    Kind::ConnectionCreated,
                    format!("Projects connected: {} and {}", n.upstream_project, n.downstream_project),
                    format!("{} is now connected to {}. Published data flows to {}.\n\n{link}", n.downstream_project, n.upstream_project, n.downstream_company),
                )
            })
            .collect(),
        Happened::Disconnected { reason } => [Side::Upstream, Side::Downstream]
            .into_iter()
            .map(|side| {
                msg(
                    side,
                    cm,
                    Kind::ConnectionDisconnected,
                    format!("Projects disconnected: {} and {}", n.upstream_project, n.downstream_project),
                    format!("The connection was ended. Reason: {reason}\nCopies already made stay in {}; nothing new is copied.\n\n{link}", n.downstream_project),
                )
            })
            .collect(),
        Happened::InitialSyncComplete { drawings, revisions } => vec![msg(
            Side::Downstream,
            Tool::Drawings,
            Kind::InitialSyncComplete,
            format!("Initial drawings sync complete: {drawings} drawings from {}", n.upstream_company),
            format!("{drawings} drawings ({revisions} revisions) from {} arrived in {}, unpublished, ready to review and publish.\n\n{link}", n.upstream_project, n.downstream_project),
        )],
        Happened::InitialRfiSyncComplete { rfis } => vec![msg(
            Side::Downstream,
            Tool::Rfis,
            Kind::InitialSyncComplete,
            format!("Initial RFI sync complete: {rfis} RFIs from {}", n.upstream_company),
            format!("{rfis} closed RFIs from {} arrived in {}, read-only, with their cover sheets and linked drawings.\n\n{link}", n.upstream_project, n.downstream_project),
        )],
        Happened::InitialSubmittalSyncComplete { submittals } => vec![msg(
            Side::Downstream,
            Tool::Submittals,
            Kind::InitialSyncComplete,
            format!("Initial submittal sync complete: {submittals} submittals from {}", n.upstream_company),
            format!("{submittals} distributed submittals from {} arrived in {}, read-only, with their cover sheets and distributed attachments.\n\n{link}", n.upstream_project, n.downstream_project),
        )],
        Happened::DrawingsPublished { revisions } => vec![msg(
            Side::Downstream,
            Tool::Drawings,
            Kind::DrawingsPublishedUpstream,
            format!("{revisions} new drawing revisions from {}", n.upstream_company),
            format!("{} published {revisions} drawing revisions in {}. The copies are in {}, unpublished, ready to review.\n\n{link}", n.upstream_company, n.upstream_project, n.downstream_project),
        )],
        Happened::DrawingsDeleted { numbers } => vec![msg(
            Side::Downstream,
            Tool::Drawings,
            Kind::DrawingsDeletedUpstream,
            format!("{} drawings deleted by {}", numbers.len(), n.upstream_company),
            format!("{} deleted {} in {}. Find them in the Deleted Drawing Revisions report of {}.\n\n{link}", n.upstream_company, numbers.join(", "), n.upstream_project, n.downstream_project),
        )],
    }
}

/// Default recipients: the tool's ADMIN members. A narrowed list keeps only the selected
/// ones who are still admins; added company admins (still company admins) join.
pub fn recipients(
    tool_admins: &[String],
    narrowed: bool,
    selected: &[String],
    company_admins_still_admins: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = tool_admins
        .iter()
        .filter(|a| !narrowed || selected.contains(a))
        .cloned()
        .chain(company_admins_still_admins.iter().cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_approved_requests_are_not_announced_as_requests() {
        assert!(
            plan(
                &Happened::Requested {
                    requires_review: false
                },
                &Names::default()
            )
            .is_empty()
        );
        let both = plan(
            &Happened::Requested {
                requires_review: true,
            },
            &Names::default(),
        );
        assert_eq!(
            both.iter().map(|p| p.side).collect::<Vec<_>>(),
            vec![Side::Upstream, Side::Downstream]
        );
    }

    #[test]
    fn narrowing_and_company_admins() {
        let admins = vec!["usr_a".to_string(), "usr_b".to_string()];
        assert_eq!(recipients(&admins, false, &[], &[]), admins);
        assert_eq!(
            recipients(
                &admins,
                true,
                &["usr_b".into(), "usr_gone".into()],
                &["usr_c".into()]
            ),
            vec!["usr_b", "usr_c"]
        );
    }
}
