//! Demo data for `connectability dev`: RFIs in Keystone's HQ project (a GC project), so
//! adding RFIS to Ridgeline's Keystone connection shows what is copied and what is not.
//!
//! | # | status | private | Ridgeline takes part | copied to Ridgeline |
//! |---|--------|---------|----------------------|---------------------|
//! | 1 | closed | no      | no                   | yes (R1)            |
//! | 2 | closed | yes     | Raj on distribution  | yes (R2)            |
//! | 3 | closed | yes     | no                   | no (R2)             |
//! | 4 | open   | no      | no                   | when it closes      |

use connectability_blobs::Blobs;
use connectability_platform::input::Id;
use connectability_store::{Db, now_ms};

use crate::{
    db::{self, FileRow, ResponseRow, RfiRow},
    domain::{FILE, RESPONSE, RfiStatus, date_of},
    pdf,
};

pub const PROJECT: &str = "prj_keystone_hq";
const COMPANY: &str = "co_keystone";

struct Demo {
    number: i64,
    subject: &'static str,
    question: &'static str,
    private: bool,
    closed: bool,
    distribution: &'static [&'static str],
    answer: &'static str,
}

const RFIS: &[Demo] = &[
    Demo {
        number: 1,
        subject: "Beam pocket at grid C4",
        question: "The beam pocket at grid C4 conflicts with the duct run on sheet M-201. Lower the pocket or reroute the duct?",
        private: false,
        closed: true,
        distribution: &["usr_kim"],
        answer: "Keep the pocket; reroute the duct per detail 5/S-501.",
    },
    Demo {
        number: 2,
        subject: "Panel clearance in electrical room 104",
        question: "Panel LP-1A has 30 in. of working clearance; code asks for 36 in. Can the door swing change?",
        private: true,
        closed: true,
        distribution: &["usr_kim", "usr_raj"],
        answer: "Yes: reverse the door swing; see revised A-104.",
    },
    Demo {
        number: 3,
        subject: "Owner budget for lobby finishes",
        question: "Which finish allowance applies to the lobby?",
        private: true,
        closed: true,
        distribution: &["usr_kim"],
        answer: "Allowance B, confirmed by the owner.",
    },
    Demo {
        number: 4,
        subject: "Slab edge embed spacing",
        question: "Embed plates on the north slab edge are at 4 ft on center on S-301 and 5 ft on S-302. Which governs?",
        private: false,
        closed: false,
        distribution: &["usr_kim"],
        answer: "",
    },
];

/// Loads the demo RFIs unless the project has RFIs. Returns whether it wrote them.
pub async fn load(db: &Db, blobs: &Blobs) -> anyhow::Result<bool> {
    let mut tx = db.begin().await?;
    if db::next_number(&mut tx, PROJECT).await? > 1 {
        return Ok(false);
    }
    let now = now_ms();
    let (mut rfis, mut responses, mut files) = (Vec::new(), Vec::new(), Vec::new());
    for d in RFIS {
        let distribution: Vec<String> = d.distribution.iter().map(|u| u.to_string()).collect();
        let mut companies = vec![COMPANY.to_string()];
        if distribution.iter().any(|u| u == "usr_raj") {
            companies.push("co_ridgeline".into());
        }
        let mut rfi = RfiRow {
            id: Id::generate(crate::domain::RFI).to_string(),
            project_id: PROJECT.into(),
            number: d.number,
            subject: d.subject.into(),
            question: d.question.into(),
            question_file_ids: Vec::new(),
            status: if d.closed {
                RfiStatus::Closed
            } else {
                RfiStatus::Open
            } as i64,
            manager_id: "usr_kim".into(),
            received_from_id: "usr_kim".into(),
            responsible_contractor: "Keystone Steel".into(),
            assignee_ids: vec!["usr_kim".into()],
            distribution_ids: distribution,
            creator_id: "usr_kim".into(),
            participant_company_ids: companies,
            date_initiated: date_of(now),
            due_date: String::new(),
            private: d.private,
            drawing_revision_ids: Vec::new(),
            cover_file_id: String::new(),
            drawings_file_id: String::new(),
            version: 1,
            close_ms: d.closed.then_some(now),
            deleted_ms: None,
            copy: Default::default(),
            origin_version: 0,
            disconnected: false,
            create_ms: now,
            update_ms: now,
        };
        if !d.answer.is_empty() {
            responses.push(ResponseRow {
                id: Id::generate(RESPONSE).to_string(),
                rfi_id: rfi.id.clone(),
                author_id: "usr_kim".into(),
                body: d.answer.into(),
                file_ids: Vec::new(),
                official: true,
                create_ms: now,
            });
        }
        if d.closed {
            let cover = pdf::cover_sheet(&pdf::CoverSheet {
                number: d.number,
                subject: d.subject.into(),
                private: d.private,
                manager: "Kim Novak (usr_kim)".into(),
                received_from: "Kim Novak (usr_kim)".into(),
                responsible_contractor: "Keystone Steel".into(),
                assignees: vec!["Kim Novak (usr_kim)".into()],
                distribution: rfi.distribution_ids.clone(),
                creator: "Kim Novak (usr_kim)".into(),
                date_initiated: rfi.date_initiated.clone(),
                question: d.question.into(),
                responses: vec![("Kim Novak (usr_kim)".into(), true, d.answer.into())],
                ..Default::default()
            })?;
            let drawings = pdf::linked_drawings(d.number, d.subject, &[], &[])?;
            for (label, bytes) in [("cover-sheet", cover), ("linked-drawings", drawings)] {
                let file = FileRow::new(
                    Id::generate(FILE).to_string(),
                    PROJECT,
                    COMPANY,
                    format!("RFI-{}-{label}.pdf", d.number),
                    "application/pdf".into(),
                    &bytes,
                    now,
                );
                blobs.put(&file.object_key, bytes.into()).await?;
                match label {
                    "cover-sheet" => rfi.cover_file_id = file.id.clone(),
                    _ => rfi.drawings_file_id = file.id.clone(),
                }
                files.push(file);
            }
        }
        rfis.push(rfi);
    }
    db::insert(&mut tx, &files).await?;
    db::insert(&mut tx, &rfis).await?;
    db::insert(&mut tx, &responses).await?;
    tx.commit().await?;
    Ok(true)
}
