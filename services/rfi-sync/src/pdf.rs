//! The RFI's PDFs: the cover sheet (the RFI's fields and responses as text pages) and the
//! linked drawings document (an index page, then every page of each linked revision's PDF;
//! a file that is not a readable PDF is listed on the index instead).

pub use connectability_pdf::{Line, merge, page_count, text_document, text_of};

/// What a cover sheet shows, with people already named.
#[derive(Debug, Clone, Default)]
pub struct CoverSheet {
    pub number: i64,
    pub subject: String,
    pub private: bool,
    pub manager: String,
    pub received_from: String,
    pub responsible_contractor: String,
    pub assignees: Vec<String>,
    pub distribution: Vec<String>,
    pub creator: String,
    pub date_initiated: String,
    pub due_date: String,
    pub drawing_revision_ids: Vec<String>,
    pub question: String,
    /// Shown responses: (who, official, text).
    pub responses: Vec<(String, bool, String)>,
    pub official_only: bool,
}

/// The cover sheet of a closed RFI.
pub fn cover_sheet(c: &CoverSheet) -> anyhow::Result<Vec<u8>> {
    use Line::{Blank, Heading, Text, Title};
    let mut lines = vec![
        Title(format!("RFI #{}: {}", c.number, c.subject)),
        Blank,
        Text(format!(
            "Status: Closed    Private: {}",
            if c.private { "yes" } else { "no" }
        )),
        Text(format!("RFI manager: {}", c.manager)),
        Text(format!("Received from: {}", c.received_from)),
        Text(format!(
            "Responsible contractor: {}",
            c.responsible_contractor
        )),
        Text(format!("Assignees: {}", c.assignees.join(", "))),
        Text(format!("Distribution: {}", c.distribution.join(", "))),
        Text(format!("Created by: {}", c.creator)),
        Text(format!(
            "Date initiated: {}    Due date: {}",
            c.date_initiated, c.due_date
        )),
        Text(format!(
            "Linked drawing revisions: {}",
            c.drawing_revision_ids.join(", ")
        )),
        Blank,
        Heading("Question".into()),
        Text(c.question.clone()),
        Blank,
        Heading(if c.official_only {
            "Official response".into()
        } else {
            "Responses".into()
        }),
    ];
    for (who, official, body) in &c.responses {
        let label = if *official { " - official answer" } else { "" };
        lines.push(Text(format!("{who}{label}:")));
        lines.push(Text(body.clone()));
        lines.push(Blank);
    }
    text_document(&format!("RFI #{}", c.number), &lines)
}

/// The linked drawings document: an index page (`listed` lines, with unreadable files
/// noted), then every page of each readable `part`.
pub fn linked_drawings(
    number: i64,
    subject: &str,
    listed: &[String],
    parts: &[Vec<u8>],
) -> anyhow::Result<Vec<u8>> {
    use Line::{Blank, Text, Title};
    let (_, unreadable) = merge(parts)?;
    let mut index = vec![
        Title(format!("RFI #{number}: {subject} - linked drawings")),
        Blank,
    ];
    if listed.is_empty() {
        index.push(Text("No drawings are linked to this RFI.".into()));
    }
    for (i, line) in listed.iter().enumerate() {
        let note = if unreadable.contains(&i) {
            " - not a readable PDF, not included"
        } else {
            ""
        };
        index.push(Text(format!("{line}{note}")));
    }
    let mut all = vec![text_document("Linked drawings", &index)?];
    all.extend(parts.iter().cloned());
    Ok(merge(&all)?.0)
}
