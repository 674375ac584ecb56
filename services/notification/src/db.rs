//! Every SQL statement of the notification service, written once for Postgres and SQLite.

use connectability_platform::time::timestamp;
use connectability_proto::notifications::v1 as pb;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

type Result<T> = std::result::Result<T, sqlx::Error>;

/// A stored list setting; absent means the default (all tool admins).
#[derive(Debug, Clone, Default)]
pub struct ListSetting {
    pub narrowed: bool,
    pub selected_admins: Vec<String>,
    pub company_admins: Vec<String>,
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

pub async fn list_setting(
    conn: &mut AnyConnection,
    project: &str,
    tool: i32,
) -> Result<ListSetting> {
    let row = sqlx::query("SELECT narrowed, selected_admins, company_admins FROM distribution_lists WHERE project_id = $1 AND tool = $2")
        .bind(project)
        .bind(i64::from(tool))
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => ListSetting {
            narrowed: r.try_get::<i64, _>("narrowed")? != 0,
            selected_admins: split(&r.try_get::<String, _>("selected_admins")?),
            company_admins: split(&r.try_get::<String, _>("company_admins")?),
        },
        None => ListSetting::default(),
    })
}

pub async fn save_list_setting(
    conn: &mut AnyConnection,
    project: &str,
    tool: i32,
    s: &ListSetting,
    actor: &str,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO distribution_lists (project_id, tool, narrowed, selected_admins, company_admins, updated_by, update_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (project_id, tool) DO UPDATE SET narrowed = excluded.narrowed,
            selected_admins = excluded.selected_admins, company_admins = excluded.company_admins,
            updated_by = excluded.updated_by, update_ms = excluded.update_ms",
    )
    .bind(project)
    .bind(i64::from(tool))
    .bind(i64::from(s.narrowed))
    .bind(s.selected_admins.join(","))
    .bind(s.company_admins.join(","))
    .bind(actor)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// A notification for one recipient, and its email.
pub struct NewNotification<'a> {
    pub id: &'a str,
    pub recipient_id: &'a str,
    pub event_id: &'a str,
    pub kind: i32,
    pub subject: &'a str,
    pub body: &'a str,
    pub html: &'a str,
    pub project_id: &'a str,
    pub connection_id: &'a str,
    pub email: &'a str,
    pub now_ms: i64,
    /// The trace of the event that caused it; sending the email joins it.
    pub traceparent: Option<&'a str>,
}

/// Records it unless this recipient already has it for this event (N8). Returns whether
/// it was new; only then is an email queued.
pub async fn add_notification(conn: &mut AnyConnection, n: &NewNotification<'_>) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO notifications (id, recipient_id, event_id, kind, subject, body, project_id, connection_id, create_ms, read_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)
         ON CONFLICT (event_id, recipient_id, kind) DO NOTHING",
    )
    .bind(n.id)
    .bind(n.recipient_id)
    .bind(n.event_id)
    .bind(i64::from(n.kind))
    .bind(n.subject)
    .bind(n.body)
    .bind(n.project_id)
    .bind(n.connection_id)
    .bind(n.now_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 || n.email.is_empty() {
        return Ok(inserted == 1);
    }
    sqlx::query(
        "INSERT INTO emails (id, to_address, subject, text_body, html_body, attempts, next_attempt_ms, sent_ms, last_error, create_ms, traceparent)
         VALUES ($1, $2, $3, $4, $5, 0, $6, NULL, '', $6, $7)",
    )
    .bind(n.id)
    .bind(n.email)
    .bind(n.subject)
    .bind(n.body)
    .bind(n.html)
    .bind(n.now_ms)
    .bind(n.traceparent)
    .execute(conn)
    .await?;
    Ok(true)
}

pub async fn inbox(
    conn: &mut AnyConnection,
    recipient: &str,
    unread_only: bool,
    before: &str,
    limit: i64,
) -> Result<Vec<pb::Notification>> {
    let unread = if unread_only {
        "AND read_ms IS NULL"
    } else {
        ""
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT id, recipient_id, kind, subject, body, project_id, connection_id, create_ms, read_ms FROM notifications
         WHERE recipient_id = $1 {unread} AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT {limit}"
    )))
    .bind(recipient)
    .bind(before)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(pb::Notification {
                id: r.try_get("id")?,
                recipient_id: r.try_get("recipient_id")?,
                kind: r.try_get::<i64, _>("kind")? as i32,
                subject: r.try_get("subject")?,
                body: r.try_get("body")?,
                project_id: r.try_get("project_id")?,
                connection_id: r.try_get("connection_id")?,
                create_time: Some(timestamp(r.try_get("create_ms")?)),
                read: r.try_get::<Option<i64>, _>("read_ms")?.is_some(),
            })
        })
        .collect()
}

pub async fn mark_read(
    conn: &mut AnyConnection,
    recipient: &str,
    ids: &[String],
    now_ms: i64,
) -> Result<u64> {
    let filter = if ids.is_empty() {
        String::new()
    } else {
        format!(
            "AND id IN ({})",
            connectability_store::placeholders(3, ids.len())
        )
    };
    let mut q = sqlx::query(AssertSqlSafe(format!(
        "UPDATE notifications SET read_ms = $2 WHERE recipient_id = $1 AND read_ms IS NULL {filter}"
    )))
    .bind(recipient)
    .bind(now_ms);
    for id in ids {
        q = q.bind(id.clone());
    }
    Ok(q.execute(conn).await?.rows_affected())
}

/// An email waiting to be sent.
#[derive(Debug, Clone)]
pub struct Email {
    pub id: String,
    pub to_address: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub attempts: i64,
    pub traceparent: Option<String>,
}

pub async fn due_emails(conn: &mut AnyConnection, now_ms: i64, limit: i64) -> Result<Vec<Email>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT id, to_address, subject, text_body, html_body, attempts, traceparent FROM emails
         WHERE sent_ms IS NULL AND parked_ms IS NULL AND next_attempt_ms <= $1
         ORDER BY create_ms, id LIMIT {limit}"
    )))
    .bind(now_ms)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Email {
                id: r.try_get("id")?,
                to_address: r.try_get("to_address")?,
                subject: r.try_get("subject")?,
                text_body: r.try_get("text_body")?,
                html_body: r.try_get("html_body")?,
                attempts: r.try_get("attempts")?,
                traceparent: r.try_get("traceparent")?,
            })
        })
        .collect()
}

/// Takes an email for sending until `until_ms`, unless another replica took it or it was
/// sent meanwhile: true when it is ours to send.
pub async fn lease_email(
    conn: &mut AnyConnection,
    id: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE emails SET next_attempt_ms = $3 WHERE id = $1 AND sent_ms IS NULL AND next_attempt_ms <= $2",
    )
    .bind(id)
    .bind(now_ms)
    .bind(until_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn email_sent(conn: &mut AnyConnection, id: &str, now_ms: i64) -> Result<()> {
    sqlx::query("UPDATE emails SET sent_ms = $2, attempts = attempts + 1 WHERE id = $1")
        .bind(id)
        .bind(now_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a failed send: tried again at `next_attempt_ms`, or parked when `parked_ms` is set.
pub async fn email_failed(
    conn: &mut AnyConnection,
    id: &str,
    error: &str,
    next_attempt_ms: i64,
    parked_ms: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "UPDATE emails SET attempts = attempts + 1, last_error = $2, next_attempt_ms = $3, parked_ms = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(next_attempt_ms)
    .bind(parked_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Lists a parked email as a dead letter (consumer [`PARKED_EMAILS`]), where operators see
/// it and replay it.
pub async fn dead_letter_email(
    conn: &mut AnyConnection,
    email: &Email,
    error: &str,
    attempts: i64,
    now_ms: i64,
) -> Result<()> {
    let parked = connectability_store::Envelope {
        id: email.id.clone(),
        source: "connectability/notification".into(),
        event_type: "connectability.notifications.v1.Email".into(),
        subject: format!("emails/{}", email.id),
        time_ms: now_ms,
        traceparent: email.traceparent.clone(),
        data: email.to_address.clone().into_bytes(),
    };
    connectability_store::inbox::record_dead_letter(conn, PARKED_EMAILS, &parked, error, attempts)
        .await
}

/// The `dead_letters.consumer` of parked emails.
pub const PARKED_EMAILS: &str = "email";

/// Takes back the parked emails an operator asked to replay: due now, with a fresh count.
pub async fn unpark_requested_emails(db: &connectability_store::Db, now_ms: i64) -> Result<()> {
    let letters = connectability_store::inbox::replays_requested(db, PARKED_EMAILS).await?;
    for (letter, email) in letters {
        let mut tx = db.begin().await?;
        sqlx::query(
            "UPDATE emails SET parked_ms = NULL, attempts = 0, next_attempt_ms = $2 WHERE id = $1",
        )
        .bind(&email)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM dead_letters WHERE id = $1")
            .bind(&letter)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}
