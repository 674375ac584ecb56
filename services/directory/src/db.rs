//! Every SQL statement of the directory, written once for Postgres and SQLite.

use connectability_platform::time::timestamp;
use connectability_proto::directory::v1 as pb;
use sqlx::{AnyConnection, Row, any::AnyRow};

use crate::domain::ToolLevels;

type Result<T> = std::result::Result<T, sqlx::Error>;

fn company(r: &AnyRow) -> Result<pb::Company> {
    Ok(pb::Company {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        storage_location: r.try_get("storage_location")?,
        govcloud: r.try_get::<i64, _>("govcloud")? != 0,
        create_time: Some(timestamp(r.try_get("create_ms")?)),
    })
}

fn project(r: &AnyRow) -> Result<pb::Project> {
    Ok(pb::Project {
        id: r.try_get("id")?,
        company_id: r.try_get("company_id")?,
        name: r.try_get("name")?,
        active: r.try_get::<i64, _>("active")? != 0,
        create_time: Some(timestamp(r.try_get("create_ms")?)),
        update_time: Some(timestamp(r.try_get("update_ms")?)),
    })
}

fn user(r: &AnyRow) -> Result<pb::User> {
    Ok(pb::User {
        id: r.try_get("id")?,
        company_id: r.try_get("company_id")?,
        display_name: r.try_get("display_name")?,
        email: r.try_get("email")?,
        create_time: Some(timestamp(r.try_get("create_ms")?)),
    })
}

fn level(r: &AnyRow, column: &str) -> Result<pb::PermissionLevel> {
    let raw: i64 = r.try_get(column)?;
    pb::PermissionLevel::try_from(raw as i32)
        .map_err(|_| sqlx::Error::Decode(format!("bad level {raw} in {column}").into()))
}

fn levels(r: &AnyRow) -> Result<ToolLevels> {
    Ok(ToolLevels {
        connection_manager: level(r, "connection_manager")?,
        drawings: level(r, "drawings")?,
        rfis: level(r, "rfis")?,
        submittals: level(r, "submittals")?,
    })
}

fn member(r: &AnyRow) -> Result<pb::ProjectMember> {
    Ok(pb::ProjectMember {
        project_id: r.try_get("project_id")?,
        user_id: r.try_get("user_id")?,
        permissions: Some(levels(r)?.to_proto()),
        create_time: Some(timestamp(r.try_get("create_ms")?)),
        update_time: Some(timestamp(r.try_get("update_ms")?)),
    })
}

fn ms(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref()
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap_or(0)
}

// --- companies ---------------------------------------------------------------------------

pub async fn insert_company(conn: &mut AnyConnection, c: &pb::Company) -> Result<()> {
    sqlx::query("INSERT INTO companies (id, name, storage_location, govcloud, create_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.storage_location)
        .bind(i16::from(c.govcloud))
        .bind(ms(&c.create_time))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get_company(conn: &mut AnyConnection, id: &str) -> Result<Option<pb::Company>> {
    sqlx::query(
        "SELECT id, name, storage_location, govcloud, create_ms FROM companies WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(company)
    .transpose()
}

/// Companies after `after` in id order. `viewer` limits them to the user's own company and
/// the companies of projects they are a member of; `None` lists all.
pub async fn list_companies(
    conn: &mut AnyConnection,
    viewer: Option<(&str, &str)>,
    after: &str,
    limit: i64,
) -> Result<Vec<pb::Company>> {
    let (user_id, company_id) = viewer.unwrap_or(("", ""));
    let rows = sqlx::query(
        "SELECT id, name, storage_location, govcloud, create_ms FROM companies
         WHERE id > $1
           AND ($2 = '' OR id = $3 OR id IN (
                SELECT p.company_id FROM projects p
                JOIN project_members m ON m.project_id = p.id WHERE m.user_id = $2))
         ORDER BY id LIMIT $4",
    )
    .bind(after)
    .bind(user_id)
    .bind(company_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(company).collect()
}

/// True when the user is a member of any project of the company.
pub async fn is_member_of_company_project(
    conn: &mut AnyConnection,
    user_id: &str,
    company_id: &str,
) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM project_members m JOIN projects p ON p.id = m.project_id
         WHERE m.user_id = $1 AND p.company_id = $2",
    )
    .bind(user_id)
    .bind(company_id)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

pub async fn set_company_admin(
    conn: &mut AnyConnection,
    company_id: &str,
    user_id: &str,
    admin: bool,
) -> Result<()> {
    let sql = if admin {
        "INSERT INTO company_admins (company_id, user_id) VALUES ($1, $2) ON CONFLICT (company_id, user_id) DO NOTHING"
    } else {
        "DELETE FROM company_admins WHERE company_id = $1 AND user_id = $2"
    };
    sqlx::query(sql)
        .bind(company_id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn is_company_admin(
    conn: &mut AnyConnection,
    company_id: &str,
    user_id: &str,
) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM company_admins WHERE company_id = $1 AND user_id = $2",
    )
    .bind(company_id)
    .bind(user_id)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

// --- users -------------------------------------------------------------------------------

pub async fn insert_user(conn: &mut AnyConnection, u: &pb::User) -> Result<()> {
    sqlx::query("INSERT INTO users (id, company_id, display_name, email, create_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(&u.id)
        .bind(&u.company_id)
        .bind(&u.display_name)
        .bind(&u.email)
        .bind(ms(&u.create_time))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get_user(conn: &mut AnyConnection, id: &str) -> Result<Option<pb::User>> {
    sqlx::query("SELECT id, company_id, display_name, email, create_ms FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(user)
        .transpose()
}

pub async fn email_taken(conn: &mut AnyConnection, email: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

// --- projects ----------------------------------------------------------------------------

pub async fn insert_project(conn: &mut AnyConnection, p: &pb::Project) -> Result<()> {
    sqlx::query(
        "INSERT INTO projects (id, company_id, name, active, create_ms, update_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&p.id)
    .bind(&p.company_id)
    .bind(&p.name)
    .bind(i16::from(p.active))
    .bind(ms(&p.create_time))
    .bind(ms(&p.update_time))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update_project(conn: &mut AnyConnection, p: &pb::Project) -> Result<()> {
    sqlx::query("UPDATE projects SET name = $2, active = $3, update_ms = $4 WHERE id = $1")
        .bind(&p.id)
        .bind(&p.name)
        .bind(i16::from(p.active))
        .bind(ms(&p.update_time))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get_project(conn: &mut AnyConnection, id: &str) -> Result<Option<pb::Project>> {
    sqlx::query(
        "SELECT id, company_id, name, active, create_ms, update_ms FROM projects WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(project)
    .transpose()
}

/// Which projects a listing may include.
pub enum ProjectScope<'a> {
    All,
    /// Projects the user is a member of, plus every project of `admin_of` if set.
    VisibleTo {
        user_id: &'a str,
        admin_of: Option<&'a str>,
    },
}

pub async fn list_projects(
    conn: &mut AnyConnection,
    scope: ProjectScope<'_>,
    company_filter: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<pb::Project>> {
    let (all, user_id, admin_of) = match scope {
        ProjectScope::All => (1i64, "", ""),
        ProjectScope::VisibleTo { user_id, admin_of } => (0, user_id, admin_of.unwrap_or("")),
    };
    let rows = sqlx::query(
        "SELECT id, company_id, name, active, create_ms, update_ms FROM projects p
         WHERE p.id > $1
           AND ($2 = '' OR p.company_id = $2)
           AND ($3 = 1
                OR p.id IN (SELECT project_id FROM project_members WHERE user_id = $4)
                OR ($5 <> '' AND p.company_id = $5))
         ORDER BY p.id LIMIT $6",
    )
    .bind(after)
    .bind(company_filter)
    .bind(all)
    .bind(user_id)
    .bind(admin_of)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(project).collect()
}

// --- project directory -------------------------------------------------------------------

pub async fn get_member(
    conn: &mut AnyConnection,
    project_id: &str,
    user_id: &str,
) -> Result<Option<pb::ProjectMember>> {
    sqlx::query(
        "SELECT project_id, user_id, connection_manager, drawings, rfis, submittals, create_ms, update_ms
         FROM project_members WHERE project_id = $1 AND user_id = $2",
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(member)
    .transpose()
}

/// Inserts or replaces a directory entry.
pub async fn upsert_member(
    conn: &mut AnyConnection,
    m: &pb::ProjectMember,
    levels: ToolLevels,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO project_members (project_id, user_id, connection_manager, drawings, rfis, submittals, create_ms, update_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (project_id, user_id) DO UPDATE SET
            connection_manager = excluded.connection_manager, drawings = excluded.drawings,
            rfis = excluded.rfis, submittals = excluded.submittals, update_ms = excluded.update_ms",
    )
    .bind(&m.project_id)
    .bind(&m.user_id)
    .bind(levels.connection_manager as i16)
    .bind(levels.drawings as i16)
    .bind(levels.rfis as i16)
    .bind(levels.submittals as i16)
    .bind(ms(&m.create_time))
    .bind(ms(&m.update_time))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_member(
    conn: &mut AnyConnection,
    project_id: &str,
    user_id: &str,
) -> Result<bool> {
    let n = sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
        .bind(project_id)
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n > 0)
}

pub async fn list_members(
    conn: &mut AnyConnection,
    project_id: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<pb::ProjectMember>> {
    let rows = sqlx::query(
        "SELECT project_id, user_id, connection_manager, drawings, rfis, submittals, create_ms, update_ms
         FROM project_members WHERE project_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3",
    )
    .bind(project_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(member).collect()
}
