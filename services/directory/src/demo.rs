//! Demo data for `connectability dev`: a general contractor and a subcontractor in the same
//! storage location, a GovCloud company, a company in another storage location, active and
//! inactive projects, users with different tool levels, and company admins. Ids are fixed
//! so the README's commands work as printed.

use connectability_platform::time::timestamp;
use connectability_proto::directory::v1::{self as pb, PermissionLevel as L};
use connectability_store::{Db, now_ms, outbox};

use crate::{db, domain::ToolLevels, events};

pub const OPERATOR: &str = "operator";

/// (id, name, storage location, govcloud)
pub const COMPANIES: &[(&str, &str, &str, bool)] = &[
    ("co_summit", "Summit General Contractors", "us-east", false),
    ("co_ridgeline", "Ridgeline Electric", "us-east", false),
    ("co_federal", "Federal Works (GovCloud)", "us-east", true),
    ("co_alpine", "Alpine Mechanical", "eu-central", false),
    // Reviews every connection request (the connection manager's demo data says so).
    ("co_keystone", "Keystone Builders", "us-east", false),
];

/// (id, company, display name, email, company admin)
pub const USERS: &[(&str, &str, &str, &str, bool)] = &[
    (
        "usr_gina",
        "co_summit",
        "Gina Torres",
        "gina@summit.example",
        true,
    ),
    (
        "usr_sam",
        "co_summit",
        "Sam Okafor",
        "sam@summit.example",
        false,
    ),
    (
        "usr_raj",
        "co_ridgeline",
        "Raj Patel",
        "raj@ridgeline.example",
        true,
    ),
    (
        "usr_rita",
        "co_ridgeline",
        "Rita Chen",
        "rita@ridgeline.example",
        false,
    ),
    (
        "usr_fay",
        "co_federal",
        "Fay Morgan",
        "fay@federal.example",
        true,
    ),
    (
        "usr_anton",
        "co_alpine",
        "Anton Weber",
        "anton@alpine.example",
        true,
    ),
    (
        "usr_kim",
        "co_keystone",
        "Kim Novak",
        "kim@keystone.example",
        true,
    ),
];

/// (id, company, name, active)
pub const PROJECTS: &[(&str, &str, &str, bool)] = &[
    ("prj_harbor_tower", "co_summit", "Harbor Tower", true),
    (
        "prj_old_depot",
        "co_summit",
        "Old Depot Renovation (closed)",
        false,
    ),
    (
        "prj_harbor_electrical",
        "co_ridgeline",
        "Harbor Tower - Electrical",
        true,
    ),
    ("prj_federal_annex", "co_federal", "Federal Annex", true),
    ("prj_alpine_plant", "co_alpine", "Alpine Plant", true),
    ("prj_keystone_hq", "co_keystone", "Keystone HQ", true),
    (
        "prj_keystone_electrical",
        "co_ridgeline",
        "Keystone HQ - Electrical",
        true,
    ),
];

const fn levels(cm: L, drawings: L, rfis: L, submittals: L) -> ToolLevels {
    ToolLevels {
        connection_manager: cm,
        drawings,
        rfis,
        submittals,
    }
}

const ADMIN: ToolLevels = levels(L::Admin, L::Admin, L::Admin, L::Admin);

/// (project, user, levels)
pub const MEMBERS: &[(&str, &str, ToolLevels)] = &[
    ("prj_harbor_tower", "usr_gina", ADMIN),
    (
        "prj_harbor_tower",
        "usr_sam",
        levels(L::ReadOnly, L::Standard, L::Standard, L::ReadOnly),
    ),
    // The subcontractor's admin collaborates on the GC's project: enough to connect to it.
    (
        "prj_harbor_tower",
        "usr_raj",
        levels(L::None, L::ReadOnly, L::ReadOnly, L::ReadOnly),
    ),
    ("prj_old_depot", "usr_gina", ADMIN),
    ("prj_harbor_electrical", "usr_raj", ADMIN),
    (
        "prj_harbor_electrical",
        "usr_rita",
        levels(L::ReadOnly, L::ReadOnly, L::Standard, L::None),
    ),
    ("prj_federal_annex", "usr_fay", ADMIN),
    ("prj_alpine_plant", "usr_anton", ADMIN),
    ("prj_keystone_hq", "usr_kim", ADMIN),
    (
        "prj_keystone_hq",
        "usr_raj",
        levels(L::None, L::ReadOnly, L::ReadOnly, L::ReadOnly),
    ),
    ("prj_keystone_electrical", "usr_raj", ADMIN),
];

/// Loads the demo data unless it is already there. Returns whether it loaded.
pub async fn load(db: &Db) -> anyhow::Result<bool> {
    let mut tx = db.begin().await?;
    if db::get_company(&mut tx, COMPANIES[0].0).await?.is_some() {
        return Ok(false);
    }
    let now = Some(timestamp(now_ms()));
    let mut out = Vec::new();
    for &(id, name, fsl, govcloud) in COMPANIES {
        let c = pb::Company {
            id: id.into(),
            name: name.into(),
            storage_location: fsl.into(),
            govcloud,
            create_time: now,
        };
        db::insert_company(&mut tx, &c).await?;
        out.push(events::company_created(&c, OPERATOR));
    }
    for &(id, company_id, name, email, admin) in USERS {
        let u = pb::User {
            id: id.into(),
            company_id: company_id.into(),
            display_name: name.into(),
            email: email.into(),
            create_time: now,
        };
        db::insert_user(&mut tx, &u).await?;
        out.push(events::user_created(&u, OPERATOR));
        if admin {
            db::set_company_admin(&mut tx, company_id, id, true).await?;
            let a = pb::CompanyAdmin {
                company_id: company_id.into(),
                user_id: id.into(),
                admin: true,
            };
            out.push(events::company_admin_changed(&a, OPERATOR));
        }
    }
    for &(id, company_id, name, active) in PROJECTS {
        let p = pb::Project {
            id: id.into(),
            company_id: company_id.into(),
            name: name.into(),
            active,
            create_time: now,
            update_time: now,
        };
        db::insert_project(&mut tx, &p).await?;
        out.push(events::project_created(&p, OPERATOR));
    }
    for &(project_id, user_id, lv) in MEMBERS {
        let m = pb::ProjectMember {
            project_id: project_id.into(),
            user_id: user_id.into(),
            permissions: Some(lv.to_proto()),
            create_time: now,
            update_time: now,
        };
        db::upsert_member(&mut tx, &m, lv).await?;
        out.push(events::member_added(&m, OPERATOR));
    }
    outbox::enqueue(&mut tx, &out).await?;
    tx.commit().await?;
    Ok(true)
}
