//! The submittal's cover sheet: rendered once per distribution, upstream; copies carry the
//! very same bytes (S3).

use connectability_pdf::{Line, text_document};
pub use connectability_pdf::{page_count, text_of};

/// What a cover sheet shows, with people and files already named.
#[derive(Debug, Clone, Default)]
pub struct CoverSheet {
    pub number: i64,
    pub revision: i64,
    pub title: String,
    pub specification_section: String,
    pub kind: String,
    pub status: String,
    pub description: String,
    pub manager: String,
    pub submitter: String,
    pub responsible_contractor: String,
    pub due_date: String,
    pub received_date: String,
    /// (approver, response, comment), in workflow order.
    pub approvers: Vec<(String, String, String)>,
    pub distributed_by: String,
    pub distributed_at: String,
    pub recipients: Vec<String>,
    pub message: String,
    pub attachments: Vec<String>,
}

pub fn cover_sheet(c: &CoverSheet) -> anyhow::Result<Vec<u8>> {
    use Line::{Blank, Heading, Text, Title};
    let mut lines = vec![
        Title(format!(
            "Submittal #{} rev {}: {}",
            c.number, c.revision, c.title
        )),
        Blank,
        Text(format!(
            "Specification section: {}",
            c.specification_section
        )),
        Text(format!("Type: {}    Status: {}", c.kind, c.status)),
        Text(format!("Submittal manager: {}", c.manager)),
        Text(format!("Submitter (received from): {}", c.submitter)),
        Text(format!(
            "Responsible contractor: {}",
            c.responsible_contractor
        )),
        Text(format!(
            "Due date: {}    Received date: {}",
            c.due_date, c.received_date
        )),
        Blank,
        Heading("Description".into()),
        Text(c.description.clone()),
        Blank,
        Heading("Approvers".into()),
    ];
    for (who, response, comment) in &c.approvers {
        lines.push(Text(format!("{who}: {response}")));
        if !comment.is_empty() {
            lines.push(Text(format!("    {comment}")));
        }
    }
    lines.extend([
        Blank,
        Heading("Distribution".into()),
        Text(format!(
            "Distributed by {} on {}",
            c.distributed_by, c.distributed_at
        )),
        Text(format!("To: {}", c.recipients.join(", "))),
        Text(format!("Message: {}", c.message)),
        Text(format!("Attachments: {}", c.attachments.join(", "))),
    ]);
    text_document(
        &format!("Submittal #{} rev {}", c.number, c.revision),
        &lines,
    )
}
