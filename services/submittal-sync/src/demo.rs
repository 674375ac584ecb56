//! Demo data for `connectability dev`: submittals in Keystone's HQ project (a GC project),
//! so adding SUBMITTALS to Ridgeline's Keystone connection shows what is copied.
//!
//! | # | distributed | Ridgeline takes part       | copied to Ridgeline |
//! |---|-------------|----------------------------|---------------------|
//! | 1 | yes         | Raj is an approver         | yes (S1)            |
//! | 2 | yes         | no                         | no (S1)             |
//! | 3 | no          | Raj is on distribution     | when distributed    |

use connectability_blobs::Blobs;
use connectability_platform::input::Id;
use connectability_store::{Db, now_ms};

use crate::{
    db::{self, DistributionRow, FileRow, SubmittalRow},
    domain::{Approver, DISTRIBUTION, FILE, General, SUBMITTAL, SubmittalStatus, date_of},
    pdf,
};

pub const PROJECT: &str = "prj_keystone_hq";
const COMPANY: &str = "co_keystone";

struct Demo {
    number: i64,
    title: &'static str,
    section: &'static str,
    approvers: &'static [&'static str],
    distribution: &'static [&'static str],
    distributed: bool,
}

const SUBMITTALS: &[Demo] = &[
    Demo {
        number: 1,
        title: "Switchgear shop drawings",
        section: "26 24 13 - Switchboards",
        approvers: &["usr_kim", "usr_raj"],
        distribution: &["usr_kim"],
        distributed: true,
    },
    Demo {
        number: 2,
        title: "Curtain wall mockup",
        section: "08 44 13 - Glazed Curtain Walls",
        approvers: &["usr_kim"],
        distribution: &["usr_kim"],
        distributed: true,
    },
    Demo {
        number: 3,
        title: "Lighting fixture product data",
        section: "26 51 00 - Interior Lighting",
        approvers: &["usr_kim"],
        distribution: &["usr_kim", "usr_raj"],
        distributed: false,
    },
];

/// Loads the demo submittals unless the project has some. Returns whether it wrote them.
pub async fn load(db: &Db, blobs: &Blobs) -> anyhow::Result<bool> {
    let mut tx = db.begin().await?;
    if db::next_number(&mut tx, PROJECT).await? > 1 {
        return Ok(false);
    }
    let now = now_ms();
    let (mut rows, mut dists, mut files) = (Vec::new(), Vec::new(), Vec::new());
    for d in SUBMITTALS {
        let ids = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let general = General {
            title: d.title.into(),
            specification_section: d.section.into(),
            kind: "Shop Drawing".into(),
            description: format!("{} for review.", d.title),
            manager_id: "usr_kim".into(),
            submitter_id: "usr_kim".into(),
            responsible_contractor: "Keystone Builders".into(),
            approvers: d
                .approvers
                .iter()
                .map(|u| Approver {
                    user_id: u.to_string(),
                    response: if d.distributed { 1 } else { 0 },
                    comment: if d.distributed {
                        "Reviewed, no exceptions.".into()
                    } else {
                        String::new()
                    },
                    attachment_file_ids: Vec::new(),
                    respond_ms: d.distributed.then_some(now),
                })
                .collect(),
            distribution_ids: ids(d.distribution),
            due_date: String::new(),
            received_date: date_of(now),
        };
        let mut companies = vec![COMPANY.to_string()];
        if d.approvers.contains(&"usr_raj") || d.distribution.contains(&"usr_raj") {
            companies.push("co_ridgeline".into());
        }
        let mut row = SubmittalRow {
            id: Id::generate(SUBMITTAL).to_string(),
            project_id: PROJECT.into(),
            number: d.number,
            revision: 0,
            status: SubmittalStatus::Open as i64,
            general: general.clone(),
            attachment_file_ids: Vec::new(),
            cover_file_id: String::new(),
            participant_company_ids: companies,
            distributed_revision: -1,
            version: 1,
            deleted_ms: None,
            copy: Default::default(),
            origin_version: 0,
            outdated: false,
            disconnected: false,
            create_ms: now,
            update_ms: now,
        };
        if d.distributed {
            let bytes = pdf::cover_sheet(&pdf::CoverSheet {
                number: d.number,
                title: d.title.into(),
                specification_section: d.section.into(),
                kind: general.kind.clone(),
                status: "Open".into(),
                description: general.description.clone(),
                manager: "Kim Novak (usr_kim)".into(),
                submitter: "Kim Novak (usr_kim)".into(),
                responsible_contractor: general.responsible_contractor.clone(),
                received_date: general.received_date.clone(),
                approvers: d
                    .approvers
                    .iter()
                    .map(|u| {
                        (
                            u.to_string(),
                            "Approved".into(),
                            "Reviewed, no exceptions.".into(),
                        )
                    })
                    .collect(),
                distributed_by: "Kim Novak (usr_kim)".into(),
                distributed_at: date_of(now),
                recipients: ids(d.distribution),
                message: "For your records.".into(),
                ..Default::default()
            })?;
            let file = FileRow::new(
                Id::generate(FILE).to_string(),
                PROJECT,
                COMPANY,
                format!("Submittal-{}-rev-0-cover-sheet.pdf", d.number),
                "application/pdf".into(),
                &bytes,
                now,
            );
            blobs.put(&file.object_key, bytes.into()).await?;
            row.cover_file_id = file.id.clone();
            row.distributed_revision = 0;
            dists.push(DistributionRow {
                id: Id::generate(DISTRIBUTION).to_string(),
                submittal_id: row.id.clone(),
                project_id: PROJECT.into(),
                revision: 0,
                distributed_by: "usr_kim".into(),
                recipient_ids: ids(d.distribution),
                message: "For your records.".into(),
                responses: d
                    .approvers
                    .iter()
                    .map(|u| format!("{u} - Approved: Reviewed, no exceptions."))
                    .collect(),
                attachment_file_ids: Vec::new(),
                cover_file_id: file.id.clone(),
                general,
                copy: Default::default(),
                create_ms: now,
            });
            files.push(file);
        }
        rows.push(row);
    }
    db::insert(&mut tx, &files).await?;
    db::insert(&mut tx, &rows).await?;
    db::insert(&mut tx, &dists).await?;
    tx.commit().await?;
    Ok(true)
}
