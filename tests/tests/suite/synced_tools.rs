//! One conformance suite for every synced tool (issue 17): the sync engine's guarantees
//! (libs/sync), proven once and run for drawings, RFIs and submittals on both backends, the
//! way the quickwit metastore suite runs one set of tests per implementation. Tool-specific
//! rules (R2 privacy, S3 bytes, S5 outdated …) stay in the tool suites.
//!
//! Each tool says how to make one shareable upstream item, how to change it so its copy gets
//! new files, and how to read copies, files and sync status ([`Tool`]); the tests below are
//! written once against that.

use std::time::Duration;

use connectability_proto::{
    connections::v1::{self as cpb, ApprovalMode, ConnectionStatus, Feature as F},
    directory::v1::{self as pb, PermissionLevel as L},
    drawings::v1 as dpb,
    notifications::v1::{self as npb, NotificationKind as K},
    rfis::v1 as rpb,
    submittals::v1 as spb,
};
use connectability_testkit::{Backend, Service, TestApp, eventually};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

/// A GC's upstream project and two downstream projects of one subcontractor.
pub struct World {
    app: TestApp,
    gc: String,
    /// The GC's company admin, ADMIN on every tool upstream.
    gina: String,
    /// The subcontractor's company admin: ADMIN downstream, STANDARD upstream.
    raj: String,
    up: String,
    down: String,
    /// A second downstream project: the barrier that shows a later change was copied.
    down2: String,
    sub: String,
}

fn perms(level: L) -> pb::ToolPermissions {
    pb::ToolPermissions {
        connection_manager: level as i32,
        drawings: level as i32,
        rfis: level as i32,
        submittals: level as i32,
    }
}

async fn world(backend: Backend) -> World {
    let app = TestApp::spawn(
        backend,
        &[
            Service::Directory,
            Service::ConnectionManager,
            Service::DrawingsSync,
            Service::RfiSync,
            Service::SubmittalSync,
            Service::Notification,
        ],
    )
    .await;
    let mut op = app.directory_as_operator();
    let company = |name: &'static str| {
        let mut op = op.clone();
        async move {
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
    };
    let gc = company("Summit GC").await;
    let sub = company("Ridgeline Electric").await;
    let mut people = Vec::new();
    for (c, name) in [(&gc, "gina"), (&sub, "raj")] {
        let id = op
            .create_user(pb::CreateUserRequest {
                company_id: c.clone(),
                display_name: name.into(),
                email: format!("{name}@{c}.example"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .id;
        op.set_company_admin(pb::SetCompanyAdminRequest {
            company_id: c.clone(),
            user_id: id.clone(),
            admin: true,
        })
        .await
        .unwrap();
        people.push(id);
    }
    let (gina, raj) = (people[0].clone(), people[1].clone());
    let mut projects = Vec::new();
    for (c, name) in [
        (&gc, "Harbor Tower"),
        (&sub, "Electrical"),
        (&sub, "Lighting"),
    ] {
        projects.push(
            op.create_project(pb::CreateProjectRequest {
                company_id: c.clone(),
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .id,
        );
    }
    let member = |project: &String, user: &String, p: pb::ToolPermissions| {
        let mut op = op.clone();
        let (project, user) = (project.clone(), user.clone());
        async move {
            op.add_project_member(pb::AddProjectMemberRequest {
                project_id: project,
                user_id: user,
                permissions: Some(p),
                request_id: String::new(),
            })
            .await
            .unwrap();
        }
    };
    member(&projects[0], &gina, perms(L::Admin)).await;
    let mut upstream_raj = perms(L::Standard);
    upstream_raj.drawings = L::ReadOnly as i32;
    upstream_raj.connection_manager = L::None as i32;
    member(&projects[0], &raj, upstream_raj).await;
    member(&projects[1], &raj, perms(L::Admin)).await;
    member(&projects[2], &raj, perms(L::Admin)).await;
    World {
        app,
        gc,
        gina,
        raj,
        up: projects[0].clone(),
        down: projects[1].clone(),
        down2: projects[2].clone(),
        sub,
    }
}

/// A copy as the downstream admin sees it.
#[derive(Debug, Clone)]
pub struct CopyView {
    pub origin_id: String,
    /// Every stored file the copy names.
    pub file_ids: Vec<String>,
}

/// What the suite needs from one synced tool.
pub trait Tool {
    const FEATURE: F;
    /// The tool service, and its side of the engine (for replaying events through it).
    const SERVICE: Service;
    /// The service's name (its identity when it calls connection-manager).
    const NAME: &'static str;
    type Sync: connectability_sync::SyncedTool;
    fn sync(engine: connectability_sync::Engine) -> Self::Sync;
    /// A word of the tool's N5 subject after the count: `3 RFIs`.
    const N5_NOUN: &'static str;
    /// Makes one shareable item upstream (copied as one item, one record); its id.
    async fn share(w: &World, tag: &str) -> String;
    /// Changes shared item `id` so its copy gets new stored files (and, for tools that
    /// count each change, one more item).
    async fn change(w: &World, id: &str, tag: &str);
    /// The copies in `project`.
    async fn copies(w: &World, project: &str) -> Vec<CopyView>;
    /// Downloads file `id` as the downstream admin (the code on refusal).
    async fn download(w: &World, id: &str) -> Result<Vec<u8>, Code>;
    /// (state is IN_SYNC, items copied, items total) of a connection.
    async fn status(w: &World, connection: &str) -> Option<(bool, i64, i64)>;
}

impl World {
    fn token(&self, user: &str) -> String {
        self.app.user_token(user)
    }

    async fn request(&self, down: &str, features: &[F]) -> cpb::Connection {
        self.app
            .connections(&self.token(&self.raj))
            .request_connection(cpb::RequestConnectionRequest {
                downstream_project_id: down.into(),
                upstream_project_id: self.up.clone(),
                features: features.iter().map(|f| *f as i32).collect(),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn as_gina<R>(
        &self,
        call: impl AsyncFnOnce(
            cpb::connection_service_client::ConnectionServiceClient<
                connectability_testkit::AuthedChannel,
            >,
        ) -> Result<tonic::Response<R>, tonic::Status>,
    ) -> R {
        call(self.app.connections(&self.token(&self.gina)))
            .await
            .unwrap()
            .into_inner()
    }

    async fn in_sync<T: Tool>(&self, connection: &str, items: i64) {
        let got = eventually("the backfill", WAIT, || async {
            T::status(self, connection).await.filter(|s| s.0)
        })
        .await;
        assert_eq!((got.1, got.2), (items, items), "copied, total: {got:?}");
    }

    async fn copies_until<T: Tool>(&self, project: &str, n: usize) -> Vec<CopyView> {
        eventually("the copies", WAIT, || async {
            Some(T::copies(self, project).await).filter(|c| c.len() == n)
        })
        .await
    }

    /// Initial-sync notifications (N5) of the tool reaching the downstream admin for
    /// `project`.
    async fn n5<T: Tool>(&self, project: &str) -> Vec<String> {
        self.app
            .notifications(&self.token(&self.raj))
            .list_notifications(npb::ListNotificationsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .notifications
            .into_iter()
            .filter(|n| n.kind() == K::InitialSyncComplete && n.project_id == project)
            .map(|n| n.subject)
            .filter(|s| s.contains(T::N5_NOUN))
            .collect()
    }

    /// Objects stored under the subcontractor's prefix for `project`.
    fn stored_objects(&self, project: &str) -> usize {
        self.app.stored_files(&self.sub, project)
    }
}

// ---- the suite, written once ----

/// Backfill counts what it copies (copied == total), announces the initial sync once with
/// that count, and a later live change is copied and counted on top.
async fn backfill_counts_and_live_copies<T: Tool>(backend: Backend) {
    let w = world(backend).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(T::share(&w, &format!("b{i}")).await);
    }
    let c = w.request(&w.down, &[T::FEATURE]).await;
    w.in_sync::<T>(&c.id, 3).await;
    let copies = w.copies_until::<T>(&w.down, 3).await;
    let mut origins: Vec<String> = copies.iter().map(|c| c.origin_id.clone()).collect();
    origins.sort();
    ids.sort();
    assert_eq!(origins, ids);
    let n5 = eventually("N5", WAIT, || async {
        Some(w.n5::<T>(&w.down).await).filter(|n| !n.is_empty())
    })
    .await;
    assert_eq!(n5.len(), 1, "{n5:?}");
    assert!(n5[0].contains(&format!("3 {}", T::N5_NOUN)), "{n5:?}");
    // Live: one more shared item is copied and counted.
    T::share(&w, "live").await;
    let got = eventually("the live copy counted", WAIT, || async {
        T::status(&w, &c.id).await.filter(|s| s.1 == 4)
    })
    .await;
    assert_eq!(got.2, 4, "total follows live copies: {got:?}");
    w.copies_until::<T>(&w.down, 4).await;
    assert_eq!(
        w.n5::<T>(&w.down).await.len(),
        1,
        "the initial sync is announced once"
    );
    w.app.stop().await;
}

/// Disconnect keeps the copies and copies nothing new: a second live connection receiving
/// the later change is the barrier that shows it would have arrived. The disconnected
/// connection carries every tool, so each tool's sweep of what an interrupted copy left runs
/// beside copies of this tool it must not touch (each tool's rows live in its own database).
async fn disconnect_keeps_copies_and_copies_nothing_new<T: Tool>(backend: Backend) {
    let w = world(backend).await;
    T::share(&w, "before").await;
    let c = w
        .request(&w.down, &[F::Drawings, F::Rfis, F::Submittals])
        .await;
    let c2 = w.request(&w.down2, &[T::FEATURE]).await;
    let items = |f: F| i64::from(f == T::FEATURE);
    w.in_sync::<Drawings>(&c.id, items(F::Drawings)).await;
    w.in_sync::<Rfis>(&c.id, items(F::Rfis)).await;
    w.in_sync::<Submittals>(&c.id, items(F::Submittals)).await;
    w.in_sync::<T>(&c2.id, 1).await;
    let stored = w.stored_objects(&w.down);
    w.app
        .connections(&w.token(&w.raj))
        .disconnect_connection(cpb::DisconnectConnectionRequest {
            id: c.id.clone(),
            reason: "trade finished".into(),
        })
        .await
        .unwrap();
    eventually("the disconnect applied by every tool", WAIT, || async {
        let stopped = |s: Option<(bool, i64, i64)>| matches!(s, Some((false, ..)));
        (stopped(Drawings::status(&w, &c.id).await)
            && stopped(Rfis::status(&w, &c.id).await)
            && stopped(Submittals::status(&w, &c.id).await))
        .then_some(())
    })
    .await;
    assert_eq!(
        w.stored_objects(&w.down),
        stored,
        "no tool's sweep takes an object a copy names"
    );
    T::share(&w, "after").await;
    w.copies_until::<T>(&w.down2, 2).await;
    let kept = T::copies(&w, &w.down).await;
    assert_eq!(
        kept.len(),
        1,
        "copies stay and nothing new arrives: {kept:?}"
    );
    for f in &kept[0].file_ids {
        assert!(T::download(&w, f).await.is_ok(), "a kept copy's file {f}");
    }
    w.app.stop().await;
}

/// C12: undo removes every row and every stored file a copy ever had, including the files
/// of a copy that was replaced since (the upstream item changed after it was copied).
async fn undo_removes_every_row_and_stored_file<T: Tool>(backend: Backend) {
    let w = world(backend).await;
    let id = T::share(&w, "u").await;
    let c = w.request(&w.down, &[T::FEATURE]).await;
    w.in_sync::<T>(&c.id, 1).await;
    let first = w.copies_until::<T>(&w.down, 1).await;
    T::change(&w, &id, "u2").await;
    let second = eventually("the change copied", WAIT, || async {
        Some(T::copies(&w, &w.down).await).filter(|c| {
            c.iter()
                .flat_map(|c| &c.file_ids)
                .any(|f| !first[0].file_ids.contains(f))
        })
    })
    .await;
    let every_file: Vec<String> = first
        .iter()
        .chain(&second)
        .flat_map(|c| c.file_ids.clone())
        .collect();
    assert!(!every_file.is_empty());
    for f in &every_file {
        assert!(
            T::download(&w, f).await.is_ok(),
            "{f} readable before the undo"
        );
    }
    assert!(w.stored_objects(&w.down) > 0);
    w.app
        .connections(&w.token(&w.raj))
        .undo_connection(cpb::UndoConnectionRequest { id: c.id.clone() })
        .await
        .unwrap();
    eventually("the copies withdrawn", WAIT, || async {
        T::copies(&w, &w.down).await.is_empty().then_some(())
    })
    .await;
    for f in &every_file {
        assert_eq!(
            T::download(&w, f).await.err(),
            Some(Code::NotFound),
            "file {f} of an undone connection's copy"
        );
    }
    assert_eq!(
        w.stored_objects(&w.down),
        0,
        "no stored object stays behind"
    );
    w.app.stop().await;
}

/// An approver's undo withdraws the copies; approving again backfills from zero:
/// copied == total and the second N5 carries the right count.
async fn approver_undo_then_approve_again_counts_from_zero<T: Tool>(backend: Backend) {
    let w = world(backend).await;
    w.as_gina(async |mut c| {
        c.update_company_connection_settings(cpb::UpdateCompanyConnectionSettingsRequest {
            company_id: w.gc.clone(),
            approval_mode: ApprovalMode::RequireReview as i32,
        })
        .await
    })
    .await;
    for i in 0..2 {
        T::share(&w, &format!("a{i}")).await;
    }
    let c = w.request(&w.down, &[T::FEATURE]).await;
    assert_eq!(c.status(), ConnectionStatus::Pending);
    let approve = || {
        w.as_gina(async |mut cm| {
            cm.approve_connection(cpb::ApproveConnectionRequest { id: c.id.clone() })
                .await
        })
    };
    approve().await;
    w.in_sync::<T>(&c.id, 2).await;
    let undone = w
        .as_gina(async |mut cm| {
            cm.undo_connection(cpb::UndoConnectionRequest { id: c.id.clone() })
                .await
        })
        .await;
    assert_eq!(undone.status(), ConnectionStatus::Pending, "{undone:?}");
    eventually("the copies withdrawn", WAIT, || async {
        T::copies(&w, &w.down).await.is_empty().then_some(())
    })
    .await;
    approve().await;
    w.in_sync::<T>(&c.id, 2).await;
    w.copies_until::<T>(&w.down, 2).await;
    let n5 = eventually("two N5", WAIT, || async {
        Some(w.n5::<T>(&w.down).await).filter(|n| n.len() == 2)
    })
    .await;
    for subject in &n5 {
        assert!(subject.contains(&format!("2 {}", T::N5_NOUN)), "{n5:?}");
    }
    w.app.stop().await;
}

/// C16: a feature added to a live connection starts its backfill and announces it once.
async fn a_feature_added_later_backfills_and_announces_once<T: Tool>(backend: Backend) {
    let w = world(backend).await;
    for i in 0..2 {
        T::share(&w, &format!("f{i}")).await;
    }
    // Any other feature to start with.
    let other = [F::Drawings, F::Rfis, F::Submittals]
        .into_iter()
        .find(|f| *f != T::FEATURE)
        .unwrap();
    let c = w.request(&w.down, &[other]).await;
    assert_eq!(c.status(), ConnectionStatus::Active);
    assert!(T::status(&w, &c.id).await.is_none() || T::copies(&w, &w.down).await.is_empty());
    w.app
        .connections(&w.token(&w.raj))
        .add_connection_features(cpb::AddConnectionFeaturesRequest {
            id: c.id.clone(),
            features: vec![T::FEATURE as i32],
        })
        .await
        .unwrap();
    w.in_sync::<T>(&c.id, 2).await;
    w.copies_until::<T>(&w.down, 2).await;
    let n5 = eventually("N5", WAIT, || async {
        Some(w.n5::<T>(&w.down).await).filter(|n| !n.is_empty())
    })
    .await;
    assert_eq!(n5.len(), 1, "{n5:?}");
    assert!(n5[0].contains(&format!("2 {}", T::N5_NOUN)), "{n5:?}");
    w.app.stop().await;
}

/// The events a service wrote to its outbox, as they went out.
async fn outbox_events(db: &connectability_store::Db) -> Vec<connectability_events::Envelope> {
    use sqlx::Row;
    sqlx::query("SELECT event_id, event_type, source, subject, time_ms, traceparent, data FROM outbox ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .unwrap()
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
        .collect()
}

/// What a downstream holds: its copies (by origin, with their files) and its sync status.
async fn snapshot<T: Tool>(
    w: &World,
    connection: &str,
) -> (Vec<(String, Vec<String>)>, Option<(bool, i64, i64)>) {
    let mut copies: Vec<(String, Vec<String>)> = T::copies(w, &w.down)
        .await
        .into_iter()
        .map(|mut c| {
            c.file_ids.sort();
            (c.origin_id, c.file_ids)
        })
        .collect();
    copies.sort();
    (copies, T::status(w, connection).await)
}

/// Events only say which records changed and copies reflect the upstream now: the tool's
/// events delivered again, in order and in reverse, and the connection's events delivered
/// again late (a stale activation among them), leave the downstream as it was: no copy,
/// file or count added, no backfill restarted.
async fn replayed_reordered_and_stale_events_change_nothing<T: Tool>(backend: Backend) {
    use connectability_store::inbox::InboxConsumer;
    use connectability_sync::SyncedTool as _;
    use std::sync::Arc;
    let w = world(backend).await;
    let id = T::share(&w, "r0").await;
    T::share(&w, "r1").await;
    let c = w.request(&w.down, &[T::FEATURE]).await;
    w.in_sync::<T>(&c.id, 2).await;
    T::change(&w, &id, "r2").await;
    T::share(&w, "r3").await;
    w.copies_until::<T>(&w.down, 3).await;
    let db = w.app.db(T::SERVICE).clone();
    let drained = || async {
        let mut conn = db.pool().acquire().await.ok()?;
        let n = connectability_sync::db::work_count(&mut conn).await.ok()?;
        (n == 0).then_some(())
    };
    eventually("the live copies done", WAIT, drained).await;
    let before = snapshot::<T>(&w, &c.id).await;

    let core = Arc::new(T::sync(connectability_sync::Engine::new(
        db.clone(),
        connectability_blobs::Blobs::from_url(&format!(
            "file://{}",
            w.app.env.dir.join("blobs").display()
        ))
        .unwrap(),
        Arc::new(w.app.clock.clone()),
        Default::default(),
        w.app.connections_gateway(T::NAME),
    )));
    let tool_events: Vec<_> = outbox_events(&db)
        .await
        .into_iter()
        .filter(|e| matches!(core.changed(e), Ok(Some(_))))
        .collect();
    assert!(tool_events.len() >= 4, "{} tool events", tool_events.len());
    let handler = Arc::new(connectability_sync::ToolEvents(core.clone()));
    let in_order = InboxConsumer::new(db.clone(), "replay-in-order", handler.clone());
    for e in &tool_events {
        in_order.apply(e).await.unwrap();
    }
    let reversed = InboxConsumer::new(db.clone(), "replay-reversed", handler);
    for e in tool_events.iter().rev() {
        reversed.apply(e).await.unwrap();
    }
    // Connection events again, late: the activation is older than what was applied.
    let connection_events = outbox_events(w.app.db(Service::ConnectionManager)).await;
    assert!(
        connection_events
            .iter()
            .any(|e| e.event_type.ends_with("ConnectionActivated"))
    );
    let late = InboxConsumer::new(
        db.clone(),
        "replay-connections",
        Arc::new(connectability_sync::ConnectionEvents(core)),
    );
    for e in &connection_events {
        late.apply(e).await.unwrap();
    }
    eventually("the replayed work done", WAIT, drained).await;
    assert_eq!(snapshot::<T>(&w, &c.id).await, before);
    w.app.stop().await;
}

macro_rules! conformance {
    ($($tool:ident: $impl:ty),+ $(,)?) => {
        $(
            mod $tool {
                use connectability_testkit::Backend;
                on_both_backends!(
                    replayed_reordered_and_stale_events_change_nothing,
                    backfill_counts_and_live_copies,
                    disconnect_keeps_copies_and_copies_nothing_new,
                    undo_removes_every_row_and_stored_file,
                    approver_undo_then_approve_again_counts_from_zero,
                    a_feature_added_later_backfills_and_announces_once,
                );
                async fn replayed_reordered_and_stale_events_change_nothing(b: Backend) {
                    super::replayed_reordered_and_stale_events_change_nothing::<$impl>(b).await
                }
                async fn backfill_counts_and_live_copies(b: Backend) {
                    super::backfill_counts_and_live_copies::<$impl>(b).await
                }
                async fn disconnect_keeps_copies_and_copies_nothing_new(b: Backend) {
                    super::disconnect_keeps_copies_and_copies_nothing_new::<$impl>(b).await
                }
                async fn undo_removes_every_row_and_stored_file(b: Backend) {
                    super::undo_removes_every_row_and_stored_file::<$impl>(b).await
                }
                async fn approver_undo_then_approve_again_counts_from_zero(b: Backend) {
                    super::approver_undo_then_approve_again_counts_from_zero::<$impl>(b).await
                }
                async fn a_feature_added_later_backfills_and_announces_once(b: Backend) {
                    super::a_feature_added_later_backfills_and_announces_once::<$impl>(b).await
                }
            }
        )+
    };
}

conformance!(drawings: super::Drawings, rfis: super::Rfis, submittals: super::Submittals);

// ---- the three tools ----

pub struct Drawings;
pub struct Rfis;
pub struct Submittals;

fn pdf(text: &str) -> Vec<u8> {
    rfi_sync::pdf::text_document(text, &[rfi_sync::pdf::Line::Text(text.into())]).unwrap()
}

type Client<T> = T;
use connectability_proto::{
    drawings::v1::drawing_service_client::DrawingServiceClient,
    rfis::v1::rfi_service_client::RfiServiceClient,
    submittals::v1::submittal_service_client::SubmittalServiceClient,
};
use connectability_testkit::AuthedChannel;

impl Drawings {
    fn client(w: &World, user: &str) -> Client<DrawingServiceClient<AuthedChannel>> {
        w.app.drawings(&w.token(user))
    }

    /// Publishes revision `revision` of drawing `number` (in `area`, else a new area: a
    /// drawing is its area and number); the drawing's id.
    async fn revision(w: &World, number: &str, revision: &str, area: Option<String>) -> String {
        let mut d = Self::client(w, &w.gina);
        let new_area = || async {
            d.clone()
                .create_drawing_area(dpb::CreateDrawingAreaRequest {
                    project_id: w.up.clone(),
                    name: format!("Area {number}-{revision}"),
                    description: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .id
        };
        let area_id = match area {
            Some(a) => a,
            None => new_area().await,
        };
        let set = d
            .create_drawing_set(dpb::CreateDrawingSetRequest {
                project_id: w.up.clone(),
                name: format!("Set {number}-{revision}"),
                date: "2026-03-01".into(),
            })
            .await
            .unwrap()
            .into_inner();
        use dpb::upload_file_request::{Header, Part};
        let file = d
            .upload_file(tokio_stream::iter(vec![
                dpb::UploadFileRequest {
                    part: Some(Part::Header(Header {
                        project_id: w.up.clone(),
                        filename: format!("{number}.pdf"),
                        content_type: "application/pdf".into(),
                    })),
                },
                dpb::UploadFileRequest {
                    part: Some(Part::Chunk(pdf(&format!("{number} rev {revision}")))),
                },
            ]))
            .await
            .unwrap()
            .into_inner();
        let r = d
            .create_drawing_revision(dpb::CreateDrawingRevisionRequest {
                project_id: w.up.clone(),
                area_id,
                set_id: set.id,
                number: number.into(),
                title: number.into(),
                discipline_name: "Electrical".into(),
                discipline_position: 1,
                revision_number: revision.into(),
                revision_status: "Issued".into(),
                drawing_date: "2026-02-14".into(),
                received_date: "2026-02-20".into(),
                file_id: file.id,
                custom_fields: Default::default(),
            })
            .await
            .unwrap()
            .into_inner();
        d.publish_drawing_revisions(dpb::PublishDrawingRevisionsRequest {
            project_id: w.up.clone(),
            revision_ids: vec![r.id.clone()],
        })
        .await
        .unwrap();
        r.drawing_id
    }
}

impl Tool for Drawings {
    const FEATURE: F = F::Drawings;
    const SERVICE: Service = Service::DrawingsSync;
    const NAME: &'static str = drawings_sync::NAME;
    type Sync = drawings_sync::sync::DrawingSync;
    fn sync(engine: connectability_sync::Engine) -> Self::Sync {
        drawings_sync::sync::DrawingSync(engine)
    }
    const N5_NOUN: &'static str = "drawings";

    async fn share(w: &World, tag: &str) -> String {
        Self::revision(w, &format!("E-{tag}"), "0", None).await
    }

    async fn change(w: &World, id: &str, tag: &str) {
        let d = Self::client(w, &w.gina)
            .get_drawing(dpb::GetDrawingRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        Self::revision(w, &d.number, tag, Some(d.area_id)).await;
    }

    async fn copies(w: &World, project: &str) -> Vec<CopyView> {
        let mut d = Self::client(w, &w.raj);
        let drawings = d
            .list_drawings(dpb::ListDrawingsRequest {
                project_id: project.into(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .drawings;
        let mut out = Vec::new();
        for drawing in drawings.into_iter().filter(|d| d.origin.is_some()) {
            // A copy withdrawn between the two calls is gone.
            let Ok(revisions) = d
                .list_drawing_revisions(dpb::ListDrawingRevisionsRequest {
                    drawing_id: drawing.id.clone(),
                    page_size: 100,
                    ..Default::default()
                })
                .await
            else {
                continue;
            };
            let revisions = revisions.into_inner().revisions;
            out.push(CopyView {
                origin_id: drawing.origin.unwrap_or_default().upstream_id,
                file_ids: revisions.into_iter().map(|r| r.file_id).collect(),
            });
        }
        out
    }

    async fn download(w: &World, id: &str) -> Result<Vec<u8>, Code> {
        let mut stream = Self::client(w, &w.raj)
            .download_file(dpb::DownloadFileRequest { id: id.into() })
            .await
            .map_err(|s| s.code())?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(m) = stream.message().await.map_err(|s| s.code())? {
            if let Some(dpb::download_file_response::Part::Chunk(c)) = m.part {
                bytes.extend(c);
            }
        }
        Ok(bytes)
    }

    async fn status(w: &World, connection: &str) -> Option<(bool, i64, i64)> {
        let s = Self::client(w, &w.raj)
            .get_sync_status(dpb::GetSyncStatusRequest {
                connection_id: connection.into(),
            })
            .await
            .ok()?
            .into_inner();
        Some((
            s.state() == dpb::SyncState::InSync,
            s.items_copied,
            s.items_total,
        ))
    }
}

impl Rfis {
    fn client(w: &World, user: &str) -> Client<RfiServiceClient<AuthedChannel>> {
        w.app.rfis(&w.token(user))
    }

    async fn attachment(w: &World, tag: &str) -> String {
        use rpb::upload_file_request::{Header, Part};
        Self::client(w, &w.gina)
            .upload_file(tokio_stream::iter(vec![
                rpb::UploadFileRequest {
                    part: Some(Part::Header(Header {
                        project_id: w.up.clone(),
                        filename: format!("{tag}.txt"),
                        content_type: "text/plain".into(),
                    })),
                },
                rpb::UploadFileRequest {
                    part: Some(Part::Chunk(format!("attachment {tag}").into_bytes())),
                },
            ]))
            .await
            .unwrap()
            .into_inner()
            .id
    }
}

impl Tool for Rfis {
    const FEATURE: F = F::Rfis;
    const SERVICE: Service = Service::RfiSync;
    const NAME: &'static str = rfi_sync::NAME;
    type Sync = rfi_sync::sync::RfiSync;
    fn sync(engine: connectability_sync::Engine) -> Self::Sync {
        rfi_sync::sync::RfiSync(engine)
    }
    const N5_NOUN: &'static str = "RFIs";

    async fn share(w: &World, tag: &str) -> String {
        let mut r = Self::client(w, &w.gina);
        let file = Self::attachment(w, tag).await;
        let rfi = r
            .create_rfi(rpb::CreateRfiRequest {
                project_id: w.up.clone(),
                subject: format!("RFI {tag}"),
                question: format!("Question {tag}?"),
                question_file_ids: vec![file],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        r.close_rfi(rpb::CloseRfiRequest { id: rfi.id.clone() })
            .await
            .unwrap();
        rfi.id
    }

    /// Reopened, answered with a file, closed again: the copy gets new files.
    async fn change(w: &World, id: &str, tag: &str) {
        let mut r = Self::client(w, &w.gina);
        r.reopen_rfi(rpb::ReopenRfiRequest { id: id.into() })
            .await
            .unwrap();
        let file = Self::attachment(w, tag).await;
        r.add_rfi_response(rpb::AddRfiResponseRequest {
            rfi_id: id.into(),
            body: format!("Answer {tag}"),
            attachment_file_ids: vec![file],
        })
        .await
        .unwrap();
        r.close_rfi(rpb::CloseRfiRequest { id: id.into() })
            .await
            .unwrap();
    }

    async fn copies(w: &World, project: &str) -> Vec<CopyView> {
        Self::client(w, &w.raj)
            .list_rfis(rpb::ListRfisRequest {
                project_id: project.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .rfis
            .into_iter()
            .filter(|r| r.connected)
            .map(|r| {
                let mut file_ids = r.question_file_ids.clone();
                file_ids.push(r.cover_sheet_file_id.clone());
                file_ids.push(r.linked_drawings_file_id.clone());
                for resp in &r.responses {
                    file_ids.extend(resp.attachment_file_ids.iter().cloned());
                }
                file_ids.retain(|f| !f.is_empty());
                CopyView {
                    origin_id: r.origin.unwrap_or_default().upstream_id,
                    file_ids,
                }
            })
            .collect()
    }

    async fn download(w: &World, id: &str) -> Result<Vec<u8>, Code> {
        let mut stream = Self::client(w, &w.raj)
            .download_file(rpb::DownloadFileRequest { id: id.into() })
            .await
            .map_err(|s| s.code())?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(m) = stream.message().await.map_err(|s| s.code())? {
            if let Some(rpb::download_file_response::Part::Chunk(c)) = m.part {
                bytes.extend(c);
            }
        }
        Ok(bytes)
    }

    async fn status(w: &World, connection: &str) -> Option<(bool, i64, i64)> {
        let s = Self::client(w, &w.raj)
            .get_sync_status(rpb::GetSyncStatusRequest {
                connection_id: connection.into(),
            })
            .await
            .ok()?
            .into_inner();
        Some((
            s.state() == rpb::SyncState::InSync,
            s.items_copied,
            s.items_total,
        ))
    }
}

impl Submittals {
    fn client(w: &World, user: &str) -> Client<SubmittalServiceClient<AuthedChannel>> {
        w.app.submittals(&w.token(user))
    }

    async fn attachment(w: &World, tag: &str) -> String {
        use spb::upload_file_request::{Header, Part};
        Self::client(w, &w.gina)
            .upload_file(tokio_stream::iter(vec![
                spb::UploadFileRequest {
                    part: Some(Part::Header(Header {
                        project_id: w.up.clone(),
                        filename: format!("{tag}.pdf"),
                        content_type: "application/pdf".into(),
                    })),
                },
                spb::UploadFileRequest {
                    part: Some(Part::Chunk(format!("%PDF-1.4 {tag}").into_bytes())),
                },
            ]))
            .await
            .unwrap()
            .into_inner()
            .id
    }

    /// Distributes submittal `id` with `attachments` selected (each distribution's cover
    /// sheet is a new file).
    async fn distribute(w: &World, id: &str, tag: &str, attachments: Vec<String>) {
        Self::client(w, &w.gina)
            .distribute_submittal(spb::DistributeSubmittalRequest {
                submittal_id: id.into(),
                recipient_ids: Vec::new(),
                message: format!("distribution {tag}"),
                attachment_file_ids: attachments,
            })
            .await
            .unwrap();
    }
}

impl Tool for Submittals {
    const FEATURE: F = F::Submittals;
    const SERVICE: Service = Service::SubmittalSync;
    const NAME: &'static str = submittal_sync::NAME;
    type Sync = submittal_sync::sync::SubmittalSync;
    fn sync(engine: connectability_sync::Engine) -> Self::Sync {
        submittal_sync::sync::SubmittalSync(engine)
    }
    const N5_NOUN: &'static str = "submittals";

    /// Distributed, with the subcontractor's admin as approver (S1).
    async fn share(w: &World, tag: &str) -> String {
        let file = Self::attachment(w, tag).await;
        let s = Self::client(w, &w.gina)
            .create_submittal(spb::CreateSubmittalRequest {
                project_id: w.up.clone(),
                title: format!("Submittal {tag}"),
                approver_ids: vec![w.raj.clone()],
                attachment_file_ids: vec![file.clone()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        Self::distribute(w, &s.id, tag, vec![file]).await;
        s.id
    }

    /// Distributed again: the copy gets the new distribution's cover sheet.
    async fn change(w: &World, id: &str, tag: &str) {
        Self::distribute(w, id, tag, Vec::new()).await;
    }

    async fn copies(w: &World, project: &str) -> Vec<CopyView> {
        let mut s = Self::client(w, &w.raj);
        let copies: Vec<spb::Submittal> = s
            .list_submittals(spb::ListSubmittalsRequest {
                project_id: project.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .submittals
            .into_iter()
            .filter(|s| s.connected)
            .collect();
        let mut out = Vec::new();
        for c in copies {
            let mut file_ids = Vec::new();
            // A copy withdrawn between the two calls is gone.
            let Ok(distributions) = s
                .list_distributions(spb::ListDistributionsRequest {
                    submittal_id: c.id.clone(),
                })
                .await
            else {
                continue;
            };
            for d in distributions.into_inner().distributions {
                file_ids.push(d.cover_sheet_file_id);
                file_ids.extend(d.attachment_file_ids);
            }
            file_ids.retain(|f| !f.is_empty());
            out.push(CopyView {
                origin_id: c.origin.unwrap_or_default().upstream_id,
                file_ids,
            });
        }
        out
    }

    async fn download(w: &World, id: &str) -> Result<Vec<u8>, Code> {
        let mut stream = Self::client(w, &w.raj)
            .download_file(spb::DownloadFileRequest { id: id.into() })
            .await
            .map_err(|s| s.code())?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(m) = stream.message().await.map_err(|s| s.code())? {
            if let Some(spb::download_file_response::Part::Chunk(c)) = m.part {
                bytes.extend(c);
            }
        }
        Ok(bytes)
    }

    async fn status(w: &World, connection: &str) -> Option<(bool, i64, i64)> {
        let s = Self::client(w, &w.raj)
            .get_sync_status(spb::GetSyncStatusRequest {
                connection_id: connection.into(),
            })
            .await
            .ok()?
            .into_inner();
        Some((
            s.state() == spb::SyncState::InSync,
            s.items_copied,
            s.items_total,
        ))
    }
}
