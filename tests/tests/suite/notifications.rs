//! Notifications through the whole system: events produced by the real connection manager
//! and drawings-sync, recipients resolved from the real directory, mail to `.eml` files or a
//! real SMTP listener started here (N1-N8).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use connectability_proto::{
    connections::v1::{self as cpb, ApprovalMode, Feature as F},
    directory::v1::{self as pb, PermissionLevel as L, Tool},
    drawings::v1::{self as dpb, upload_file_request::Part},
    notifications::v1::{self as npb, NotificationKind as K},
};
use connectability_testkit::{AuthedChannel, Backend, Options, Service, TestApp, eventually};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tonic::Code;

type Directory = pb::directory_service_client::DirectoryServiceClient<AuthedChannel>;

const WAIT: Duration = Duration::from_secs(30);

fn perms(cm: L, drawings: L) -> pb::ToolPermissions {
    pb::ToolPermissions {
        connection_manager: cm as i32,
        drawings: drawings as i32,
        rfis: L::ReadOnly as i32,
        submittals: L::ReadOnly as i32,
    }
}

struct World {
    app: TestApp,
    gc_admin: String,
    gc_admin2: String,
    gc_owner: String,
    gc_reader: String,
    sub_admin: String,
    sub_drawings: String,
    gc_project: String,
    sub_project: String,
}

async fn company(op: &mut Directory, name: &str) -> String {
    op.create_company(pb::CreateCompanyRequest {
        name: name.into(),
        storage_location: "us-east".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .id
}

async fn user(op: &mut Directory, company: &str, name: &str, admin: bool) -> String {
    let id = op
        .create_user(pb::CreateUserRequest {
            company_id: company.into(),
            display_name: name.into(),
            email: format!("{name}@{company}.example"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    if admin {
        op.set_company_admin(pb::SetCompanyAdminRequest {
            company_id: company.into(),
            user_id: id.clone(),
            admin: true,
        })
        .await
        .unwrap();
    }
    id
}

async fn project(op: &mut Directory, company: &str, name: &str) -> String {
    op.create_project(pb::CreateProjectRequest {
        company_id: company.into(),
        name: name.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .id
}

async fn member(op: &mut Directory, project: &str, user: &str, p: pb::ToolPermissions) {
    op.add_project_member(pb::AddProjectMemberRequest {
        project_id: project.into(),
        user_id: user.into(),
        permissions: Some(p),
        ..Default::default()
    })
    .await
    .unwrap();
}

async fn world_with(backend: Backend, options: Options) -> World {
    let services = [
        Service::Directory,
        Service::DrawingsSync,
        Service::Notification,
        Service::ConnectionManager,
    ];
    let app = TestApp::spawn_with(backend, &services, options).await;
    let mut op = app.directory_as_operator();
    let gc = company(&mut op, "Summit GC").await;
    let sub = company(&mut op, "Ridgeline Electric").await;
    let gc_admin = user(&mut op, &gc, "gina", false).await;
    let gc_admin2 = user(&mut op, &gc, "glen", false).await;
    let gc_owner = user(&mut op, &gc, "olga", true).await;
    let gc_reader = user(&mut op, &gc, "sam", false).await;
    let sub_admin = user(&mut op, &sub, "raj", true).await;
    let sub_drawings = user(&mut op, &sub, "dora", false).await;
    let gc_project = project(&mut op, &gc, "Harbor Tower").await;
    let sub_project = project(&mut op, &sub, "Harbor Tower - Electrical").await;
    member(&mut op, &gc_project, &gc_admin, perms(L::Admin, L::Admin)).await;
    member(&mut op, &gc_project, &gc_admin2, perms(L::Admin, L::None)).await;
    member(
        &mut op,
        &gc_project,
        &gc_reader,
        perms(L::ReadOnly, L::ReadOnly),
    )
    .await;
    member(
        &mut op,
        &gc_project,
        &sub_admin,
        perms(L::None, L::ReadOnly),
    )
    .await;
    member(&mut op, &sub_project, &sub_admin, perms(L::Admin, L::Admin)).await;
    member(
        &mut op,
        &sub_project,
        &sub_drawings,
        perms(L::None, L::Admin),
    )
    .await;
    app.connections(&app.user_token(&gc_owner))
        .update_company_connection_settings(cpb::UpdateCompanyConnectionSettingsRequest {
            company_id: gc,
            approval_mode: ApprovalMode::RequireReview as i32,
        })
        .await
        .unwrap();
    World {
        app,
        gc_admin,
        gc_admin2,
        gc_owner,
        gc_reader,
        sub_admin,
        sub_drawings,
        gc_project,
        sub_project,
    }
}

async fn world(backend: Backend) -> World {
    world_with(backend, Options::default()).await
}

impl World {
    async fn inbox(&self, user: &str) -> Vec<npb::Notification> {
        self.app
            .notifications(&self.app.user_token(user))
            .list_notifications(npb::ListNotificationsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .notifications
    }

    fn kinds(list: &[npb::Notification]) -> Vec<K> {
        let mut k: Vec<K> = list.iter().map(|n| n.kind()).collect();
        k.sort_by_key(|k| *k as i32);
        k
    }

    /// Waits until `user`'s inbox holds a notification of `kind`.
    async fn until(&self, user: &str, kind: K) -> Vec<npb::Notification> {
        eventually(&format!("{kind:?} for {user}"), WAIT, || async {
            let inbox = self.inbox(user).await;
            inbox.iter().any(|n| n.kind() == kind).then_some(inbox)
        })
        .await
    }

    async fn request(&self) -> cpb::Connection {
        self.app
            .connections(&self.app.user_token(&self.sub_admin))
            .request_connection(cpb::RequestConnectionRequest {
                downstream_project_id: self.sub_project.clone(),
                upstream_project_id: self.gc_project.clone(),
                features: vec![F::Drawings as i32],
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn approve(&self, c: &cpb::Connection) {
        self.app
            .connections(&self.app.user_token(&self.gc_admin))
            .approve_connection(cpb::ApproveConnectionRequest { id: c.id.clone() })
            .await
            .unwrap();
    }

    async fn connected(&self) -> cpb::Connection {
        let c = self.request().await;
        self.approve(&c).await;
        c
    }

    /// `by` disconnects connection `id` with `reason`.
    async fn disconnect(&self, by: &str, id: &str, reason: &str) {
        self.app
            .connections(&self.app.user_token(by))
            .disconnect_connection(cpb::DisconnectConnectionRequest {
                id: id.into(),
                reason: reason.into(),
            })
            .await
            .unwrap();
    }

    async fn publish_sheets(&self, numbers: &[&str]) -> Vec<String> {
        let mut d = self.app.drawings(&self.app.user_token(&self.gc_admin));
        let area = d
            .create_drawing_area(dpb::CreateDrawingAreaRequest {
                project_id: self.gc_project.clone(),
                name: format!("Area {}", numbers[0]),
                description: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let set = d
            .create_drawing_set(dpb::CreateDrawingSetRequest {
                project_id: self.gc_project.clone(),
                name: "IFC".into(),
                date: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut revisions = Vec::new();
        for n in numbers {
            let header = dpb::UploadFileRequest {
                part: Some(Part::Header(dpb::upload_file_request::Header {
                    project_id: self.gc_project.clone(),
                    filename: format!("{n}.pdf"),
                    content_type: "application/pdf".into(),
                })),
            };
            let chunk = dpb::UploadFileRequest {
                part: Some(Part::Chunk(format!("%PDF-1.4 {n}").into_bytes())),
            };
            let file = d
                .upload_file(tokio_stream::iter(vec![header, chunk]))
                .await
                .unwrap()
                .into_inner();
            let rev = d
                .create_drawing_revision(dpb::CreateDrawingRevisionRequest {
                    project_id: self.gc_project.clone(),
                    area_id: area.id.clone(),
                    set_id: set.id.clone(),
                    number: n.to_string(),
                    title: format!("Sheet {n}"),
                    file_id: file.id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            revisions.push(rev);
        }
        d.publish_drawing_revisions(dpb::PublishDrawingRevisionsRequest {
            project_id: self.gc_project.clone(),
            revision_ids: revisions.iter().map(|r| r.id.clone()).collect(),
        })
        .await
        .unwrap();
        revisions.into_iter().map(|r| r.drawing_id).collect()
    }

    fn eml_files(&self) -> Vec<String> {
        std::fs::read_dir(self.app.env.dir.join("mail"))
            .map(|d| {
                d.flatten()
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn n01_connection_requested_reaches_both_lists(backend: Backend) {
    let w = world(backend).await;
    w.request().await;
    let up = w.until(&w.gc_admin, K::ConnectionRequestToReview).await;
    assert!(
        up[0].subject.contains("Ridgeline Electric"),
        "{}",
        up[0].subject
    );
    w.until(&w.gc_admin2, K::ConnectionRequestToReview).await;
    let down = w.until(&w.sub_admin, K::ConnectionRequestSent).await;
    assert!(down[0].body.contains("Harbor Tower"));
    // Not tool admins, or company admins outside the directory: nothing by default.
    assert!(w.inbox(&w.gc_reader).await.is_empty());
    assert!(w.inbox(&w.gc_owner).await.is_empty());
    assert!(
        w.inbox(&w.sub_drawings).await.is_empty(),
        "no Connection Manager admin rights"
    );
    w.app.stop().await;
}

async fn n02_rejection_reaches_the_downstream_list(backend: Backend) {
    let w = world(backend).await;
    let c = w.request().await;
    w.app
        .connections(&w.app.user_token(&w.gc_admin))
        .reject_connection(cpb::RejectConnectionRequest {
            id: c.id.clone(),
            message: "Wrong project".into(),
        })
        .await
        .unwrap();
    let down = w.until(&w.sub_admin, K::ConnectionRejected).await;
    let rejected = down
        .iter()
        .find(|n| n.kind() == K::ConnectionRejected)
        .unwrap();
    assert!(rejected.body.contains("Wrong project"));
    assert_eq!(rejected.connection_id, c.id);
    assert!(
        w.inbox(&w.gc_admin)
            .await
            .iter()
            .all(|n| n.kind() != K::ConnectionRejected)
    );
    w.app.stop().await;
}

async fn n03_created_connection_reaches_both_lists(backend: Backend) {
    let w = world(backend).await;
    w.connected().await;
    w.until(&w.gc_admin, K::ConnectionCreated).await;
    w.until(&w.gc_admin2, K::ConnectionCreated).await;
    w.until(&w.sub_admin, K::ConnectionCreated).await;
    w.app.stop().await;
}

async fn n04_disconnection_reaches_both_lists_with_the_reason(backend: Backend) {
    let w = world(backend).await;
    let c = w.connected().await;
    w.disconnect(&w.sub_admin, &c.id, "Subcontract ended").await;
    for user in [&w.gc_admin, &w.sub_admin] {
        let inbox = w.until(user, K::ConnectionDisconnected).await;
        assert!(
            inbox
                .iter()
                .any(|n| n.kind() == K::ConnectionDisconnected
                    && n.body.contains("Subcontract ended"))
        );
    }
    w.app.stop().await;
}

async fn n05_initial_sync_complete_reaches_the_downstream_drawings_list(backend: Backend) {
    let w = world(backend).await;
    w.publish_sheets(&["A-101", "A-102"]).await;
    w.connected().await;
    let inbox = w.until(&w.sub_drawings, K::InitialSyncComplete).await;
    let done = inbox
        .iter()
        .find(|n| n.kind() == K::InitialSyncComplete)
        .unwrap();
    assert!(done.subject.contains("2 drawings"), "{}", done.subject);
    assert!(
        w.inbox(&w.gc_admin)
            .await
            .iter()
            .all(|n| n.kind() != K::InitialSyncComplete)
    );
    w.app.stop().await;
}

async fn n06_one_message_per_publish_however_many_sheets(backend: Backend) {
    let w = world(backend).await;
    w.connected().await;
    w.until(&w.sub_drawings, K::InitialSyncComplete).await;
    w.publish_sheets(&["A-101", "A-102", "A-103", "A-104", "A-105"])
        .await;
    let inbox = w.until(&w.sub_drawings, K::DrawingsPublishedUpstream).await;
    let published: Vec<_> = inbox
        .iter()
        .filter(|n| n.kind() == K::DrawingsPublishedUpstream)
        .collect();
    assert_eq!(
        published.len(),
        1,
        "one message for one publish of five sheets"
    );
    assert!(
        published[0].subject.contains('5'),
        "{}",
        published[0].subject
    );
    w.app.stop().await;
}

async fn n07_one_message_per_upstream_delete(backend: Backend) {
    let w = world(backend).await;
    let drawings = w.publish_sheets(&["A-101", "A-102"]).await;
    w.connected().await;
    w.until(&w.sub_drawings, K::InitialSyncComplete).await;
    w.app
        .drawings(&w.app.user_token(&w.gc_admin))
        .delete_drawing(dpb::DeleteDrawingRequest {
            id: drawings[0].clone(),
        })
        .await
        .unwrap();
    let inbox = w.until(&w.sub_drawings, K::DrawingsDeletedUpstream).await;
    let deleted: Vec<_> = inbox
        .iter()
        .filter(|n| n.kind() == K::DrawingsDeletedUpstream)
        .collect();
    assert_eq!(deleted.len(), 1);
    assert!(deleted[0].body.contains("A-101"));
    w.app.stop().await;
}

async fn n08_each_recipient_once_in_the_inbox_and_by_email(backend: Backend) {
    use connectability_store::inbox::InboxConsumer;
    use sqlx::Row;
    let w = world(backend).await;
    w.connected().await;
    let created = w.until(&w.sub_admin, K::ConnectionCreated).await;
    assert_eq!(
        created
            .iter()
            .filter(|n| n.kind() == K::ConnectionCreated)
            .count(),
        1
    );
    // The last messages this connection causes: after them, counts no longer move.
    w.until(&w.sub_drawings, K::InitialSyncComplete).await;
    w.until(&w.sub_admin, K::InitialSyncComplete).await;
    // Every notification becomes exactly one email (.eml files here).
    let total: i64 = eventually("every email written", WAIT, || async {
        let db = w.app.db(Service::Notification);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
            .fetch_one(db.pool())
            .await
            .unwrap();
        let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM emails WHERE sent_ms IS NOT NULL")
            .fetch_one(db.pool())
            .await
            .unwrap();
        (n > 0 && n == sent && w.eml_files().len() as i64 == n).then_some(n)
    })
    .await;
    let eml = w.eml_files().join("\n");
    assert!(eml.contains("Subject: Projects connected"), "{eml}");
    assert!(eml.contains("text/html") && eml.contains("text/plain"));
    // The same events delivered again (a fresh inbox, so the handler runs) add nothing.
    let conn_db = w.app.db(Service::ConnectionManager);
    let rows = sqlx::query(
        "SELECT event_id, event_type, source, subject, time_ms, traceparent, data FROM outbox",
    )
    .fetch_all(conn_db.pool())
    .await
    .unwrap();
    let events: Vec<connectability_events::Envelope> = rows
        .iter()
        .map(|r| connectability_events::Envelope {
            id: r.get("event_id"),
            event_type: r.get("event_type"),
            source: r.get("source"),
            subject: r.get("subject"),
            time_ms: r.get("time_ms"),
            traceparent: r.get("traceparent"),
            data: r.get("data"),
        })
        .collect();
    assert!(!events.is_empty());
    let handler = notification_handler(&w);
    let again = InboxConsumer::new(w.app.db(Service::Notification).clone(), "replay", handler);
    for e in &events {
        again.apply(e).await.unwrap();
    }
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
        .fetch_one(w.app.db(Service::Notification).pool())
        .await
        .unwrap();
    assert_eq!(after, total, "no second message for a redelivered event");
    w.app.stop().await;
}

fn notification_handler(w: &World) -> Arc<dyn connectability_store::inbox::InboxHandler> {
    notification::testing::handler(
        connectability_platform::directory::DirectoryGateway::new(
            connectability_platform::directory::channel(&format!("http://{}", w.app.addr)).unwrap(),
            w.app.issuer.service("notification"),
            Duration::ZERO,
        ),
        Arc::new(w.app.clock.clone()),
    )
}

async fn distribution_lists_narrow_and_add_company_admins(backend: Backend) {
    let w = world(backend).await;
    let mut gina = w.app.notifications(&w.app.user_token(&w.gc_admin));
    let default = gina
        .get_distribution_list(npb::GetDistributionListRequest {
            project_id: w.gc_project.clone(),
            tool: Tool::ConnectionManager as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let mut expected = vec![w.gc_admin.clone(), w.gc_admin2.clone()];
    expected.sort();
    assert_eq!(default.recipient_ids, expected);
    // Not eligible: named in the error.
    let err = gina
        .update_distribution_list(npb::UpdateDistributionListRequest {
            project_id: w.gc_project.clone(),
            tool: Tool::ConnectionManager as i32,
            narrowed: true,
            selected_admin_ids: vec![w.gc_reader.clone()],
            company_admin_ids: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains(&w.gc_reader), "{}", err.message());
    let err = gina
        .update_distribution_list(npb::UpdateDistributionListRequest {
            project_id: w.gc_project.clone(),
            tool: Tool::ConnectionManager as i32,
            narrowed: false,
            selected_admin_ids: vec![],
            company_admin_ids: vec![w.sub_admin.clone()],
        })
        .await
        .unwrap_err();
    assert!(
        err.message().contains(&w.sub_admin),
        "another company's admin is not eligible"
    );
    let err = w
        .app
        .notifications(&w.app.user_token(&w.gc_reader))
        .update_distribution_list(npb::UpdateDistributionListRequest {
            project_id: w.gc_project.clone(),
            tool: Tool::ConnectionManager as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Seed 002: only the Connection Manager list may add company admins.
    let err = gina
        .update_distribution_list(npb::UpdateDistributionListRequest {
            project_id: w.gc_project.clone(),
            tool: Tool::Drawings as i32,
            narrowed: false,
            selected_admin_ids: vec![],
            company_admin_ids: vec![w.gc_owner.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        connectability_platform::errors::bad_field(&err).as_deref(),
        Some("company_admin_ids"),
        "{err:?}"
    );
    // Narrowed to Glen, plus Olga the company admin.
    let list = gina
        .update_distribution_list(npb::UpdateDistributionListRequest {
            project_id: w.gc_project.clone(),
            tool: Tool::ConnectionManager as i32,
            narrowed: true,
            selected_admin_ids: vec![w.gc_admin2.clone()],
            company_admin_ids: vec![w.gc_owner.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut expected = vec![w.gc_admin2.clone(), w.gc_owner.clone()];
    expected.sort();
    assert_eq!(list.recipient_ids, expected);
    w.request().await;
    w.until(&w.gc_admin2, K::ConnectionRequestToReview).await;
    w.until(&w.gc_owner, K::ConnectionRequestToReview).await;
    w.until(&w.sub_admin, K::ConnectionRequestSent).await;
    assert!(
        World::kinds(&w.inbox(&w.gc_admin).await).is_empty(),
        "narrowed out"
    );
    w.app.stop().await;
}

/// A real SMTP listener: speaks the protocol, keeps every message, and can refuse the
/// next `fail` messages with a 451.
struct SmtpSink {
    url: String,
    messages: Arc<Mutex<Vec<String>>>,
    fail: Arc<AtomicUsize>,
}

async fn smtp_sink() -> SmtpSink {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let messages = Arc::new(Mutex::new(Vec::new()));
    let fail = Arc::new(AtomicUsize::new(0));
    let (m, f) = (messages.clone(), fail.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (m, f) = (m.clone(), f.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "MAIL" if f.load(Ordering::SeqCst) > 0 => {
                            f.fetch_sub(1, Ordering::SeqCst);
                            b"451 4.3.0 try again later\r\n"
                        }
                        "DATA" => {
                            let _ = write.write_all(b"354 go ahead\r\n").await;
                            let mut body = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                body.push_str(&l);
                                body.push('\n');
                            }
                            m.lock().unwrap().push(body);
                            b"250 2.0.0 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 OK\r\n",
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    SmtpSink {
        url,
        messages,
        fail,
    }
}

async fn smtp_delivery_speaks_the_protocol_and_survives_failures_exactly_once(backend: Backend) {
    let sink = smtp_sink().await;
    // The first three sends are refused; retries with backoff get them through.
    sink.fail.store(3, Ordering::SeqCst);
    let w = world_with(
        backend,
        Options {
            smtp_url: Some(sink.url.clone()),
            ..Default::default()
        },
    )
    .await;
    w.connected().await;
    w.until(&w.sub_admin, K::ConnectionCreated).await;
    let db = w.app.db(Service::Notification).clone();
    let expected: i64 = eventually("every email sent", WAIT, || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
            .fetch_one(db.pool())
            .await
            .unwrap();
        let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM emails WHERE sent_ms IS NOT NULL")
            .fetch_one(db.pool())
            .await
            .unwrap();
        (n > 0 && sent == n).then_some(n)
    })
    .await;
    assert_eq!(sink.fail.load(Ordering::SeqCst), 0, "the failures happened");
    let messages = sink.messages.lock().unwrap().clone();
    assert_eq!(messages.len() as i64, expected, "each message exactly once");
    let created: Vec<&String> = messages
        .iter()
        .filter(|m| m.contains("Subject: Projects connected"))
        .collect();
    assert!(!created.is_empty());
    assert!(
        created
            .iter()
            .all(|m| m.contains("multipart/alternative") && m.contains("text/html"))
    );
    assert!(
        messages.iter().any(|m| m.contains("To: gina@")),
        "addressed to the admins' emails"
    );
    w.app.stop().await;
}

/// Issue 18: emails are not retried forever. With the mail server refusing everything, each
/// email is tried `MAX_EMAIL_ATTEMPTS` times, then parked and listed as a dead letter
/// (consumer `email`); once the server is back, an operator's replay sends each exactly once.
async fn an_email_refused_at_every_attempt_is_parked_then_replayed_once(backend: Backend) {
    use notification::mailer::MAX_EMAIL_ATTEMPTS;
    let sink = smtp_sink().await;
    sink.fail.store(usize::MAX / 2, Ordering::SeqCst);
    let w = world_with(
        backend,
        Options {
            smtp_url: Some(sink.url.clone()),
            ..Default::default()
        },
    )
    .await;
    w.connected().await;
    w.until(&w.sub_admin, K::ConnectionCreated).await;
    let db = w.app.db(Service::Notification).clone();
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(db.pool())
                .await
                .unwrap()
        }
    };
    let emails = eventually("every email parked", WAIT, || async {
        let all = count("SELECT COUNT(*) FROM emails").await;
        let parked = count("SELECT COUNT(*) FROM emails WHERE parked_ms IS NOT NULL").await;
        (all > 0 && parked == all).then_some(all)
    })
    .await;
    assert_eq!(
        count("SELECT MIN(attempts) FROM emails").await,
        MAX_EMAIL_ATTEMPTS
    );
    assert_eq!(
        count("SELECT MAX(attempts) FROM emails").await,
        MAX_EMAIL_ATTEMPTS,
        "no attempt after parking"
    );
    let letters = connectability_store::inbox::list_dead_letters(&db, Some("email"))
        .await
        .unwrap();
    assert_eq!(letters.len() as i64, emails);
    assert!(
        letters.iter().all(|l| l.error.contains("451")),
        "{:?}",
        letters[0].error
    );
    assert!(sink.messages.lock().unwrap().is_empty());

    sink.fail.store(0, Ordering::SeqCst);
    for l in &letters {
        assert!(
            connectability_store::inbox::request_replay(&db, &l.id)
                .await
                .unwrap()
        );
    }
    let all = eventually("every replayed email sent", WAIT, || async {
        let all = count("SELECT COUNT(*) FROM emails").await;
        let sent = count("SELECT COUNT(*) FROM emails WHERE sent_ms IS NOT NULL").await;
        (all >= emails && sent == all).then_some(all)
    })
    .await;
    assert_eq!(sink.messages.lock().unwrap().len() as i64, all, "each once");
    assert!(
        connectability_store::inbox::list_dead_letters(&db, Some("email"))
            .await
            .unwrap()
            .is_empty()
    );
    w.app.stop().await;
}

async fn inbox_pages_filters_unread_and_marks_read(backend: Backend) {
    let w = world(backend).await;
    let c = w.connected().await;
    w.disconnect(&w.gc_admin, &c.id, "done").await;
    w.until(&w.gc_admin, K::ConnectionDisconnected).await;
    let mut gina = w.app.notifications(&w.app.user_token(&w.gc_admin));
    let all = w.inbox(&w.gc_admin).await;
    assert!(all.len() >= 3, "requested, created, disconnected");
    assert_eq!(all[0].kind(), K::ConnectionDisconnected, "newest first");
    let marked = gina
        .mark_notifications_read(npb::MarkNotificationsReadRequest {
            ids: vec![all[0].id.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .marked;
    assert_eq!(marked, 1);
    let unread = gina
        .list_notifications(npb::ListNotificationsRequest {
            unread_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(unread.len(), all.len() - 1);
    let page = gina
        .list_notifications(npb::ListNotificationsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.notifications.len(), 1);
    assert!(!page.next_page_token.is_empty());
    // Someone else's inbox is their own.
    assert!(w.inbox(&w.gc_reader).await.is_empty());
    w.app.stop().await;
}

on_both_backends!(
    n01_connection_requested_reaches_both_lists,
    n02_rejection_reaches_the_downstream_list,
    n03_created_connection_reaches_both_lists,
    n04_disconnection_reaches_both_lists_with_the_reason,
    n05_initial_sync_complete_reaches_the_downstream_drawings_list,
    n06_one_message_per_publish_however_many_sheets,
    n07_one_message_per_upstream_delete,
    n08_each_recipient_once_in_the_inbox_and_by_email,
    distribution_lists_narrow_and_add_company_admins,
    smtp_delivery_speaks_the_protocol_and_survives_failures_exactly_once,
    an_email_refused_at_every_attempt_is_parked_then_replayed_once,
    inbox_pages_filters_unread_and_marks_read,
    two_replicas_sending_mail_send_each_email_once,
);

/// Two replicas' mail workers on one database (found by the fault suite: both read the same
/// due emails and both sent them). The app's own worker and a second one polling hard race
/// for every email; the SMTP server receives each exactly once.
async fn two_replicas_sending_mail_send_each_email_once(backend: Backend) {
    let sink = smtp_sink().await;
    let w = world_with(
        backend,
        Options {
            smtp_url: Some(sink.url.clone()),
            ..Default::default()
        },
    )
    .await;
    let db = w.app.db(Service::Notification).clone();
    let second = notification::mailer::Outgoing::new(
        db.clone(),
        Some(&sink.url),
        w.app.env.dir.join("mail"),
        "Replica <replica@connectability.test>",
        Duration::from_secs(1),
    )
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let _ = second.send_due().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let c = w.connected().await;
    w.disconnect(&w.gc_admin, &c.id, "trade finished").await;
    w.until(&w.sub_admin, K::ConnectionDisconnected).await;
    let expected: i64 = eventually("every email sent", WAIT, || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM emails")
            .fetch_one(db.pool())
            .await
            .unwrap();
        let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM emails WHERE sent_ms IS NOT NULL")
            .fetch_one(db.pool())
            .await
            .unwrap();
        (n >= 4 && sent == n).then_some(n)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    racer.await.unwrap();
    let messages = sink.messages.lock().unwrap().clone();
    assert_eq!(messages.len() as i64, expected, "each email exactly once");
    w.app.stop().await;
}
