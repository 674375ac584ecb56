//! Submittals and their one-way sync, through gRPC across the directory, the connection
//! manager, submittal-sync and notification (S1-S6, N5).

use std::time::Duration;

use connectability_platform::errors::{bad_field, reason};
use connectability_proto::{
    connections::v1::{self as cpb, Feature as F},
    directory::v1::{self as pb, PermissionLevel as L},
    notifications::v1::{self as npb, NotificationKind as K},
    submittals::v1::{self as spb, ApproverResponse as A, SubmittalStatus as S},
};
use connectability_testkit::{AuthedChannel, Backend, Service, TestApp, eventually};
use tonic::{Code, Status};

type Directory = pb::directory_service_client::DirectoryServiceClient<AuthedChannel>;
type Submittals = spb::submittal_service_client::SubmittalServiceClient<AuthedChannel>;

const WAIT: Duration = Duration::from_secs(30);

fn perms(cm: L, submittals: L) -> pb::ToolPermissions {
    pb::ToolPermissions {
        connection_manager: cm as i32,
        drawings: L::None as i32,
        rfis: L::None as i32,
        submittals: submittals as i32,
    }
}

/// A GC project (upstream) and a subcontractor project (downstream).
struct World {
    app: TestApp,
    gc_admin: String,
    /// A GC employee with STANDARD on Submittals upstream.
    gc_member: String,
    /// Ridgeline's admin: ADMIN downstream, READ_ONLY on Submittals upstream.
    sub_admin: String,
    /// A Ridgeline employee with READ_ONLY on Submittals downstream.
    sub_reader: String,
    gc_project: String,
    sub_project: String,
    sub_company: String,
}

async fn user(op: &mut Directory, company: &str, name: &str) -> String {
    op.create_user(pb::CreateUserRequest {
        company_id: company.into(),
        display_name: name.into(),
        email: format!("{name}@{company}.example"),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .id
}

async fn world(backend: Backend) -> World {
    let app = TestApp::spawn(
        backend,
        &[
            Service::Directory,
            Service::DrawingsSync,
            Service::SubmittalSync,
            Service::ConnectionManager,
            Service::Notification,
        ],
    )
    .await;
    let mut op = app.directory_as_operator();
    let mut company = async |name: &str| {
        op.create_company(pb::CreateCompanyRequest {
            name: name.into(),
            storage_location: "us-east".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
    };
    let gc = company("Summit GC").await;
    let sub = company("Ridgeline Electric").await;
    let mut op = app.directory_as_operator();
    let gc_admin = user(&mut op, &gc, "gina").await;
    let gc_member = user(&mut op, &gc, "sam").await;
    let sub_admin = user(&mut op, &sub, "raj").await;
    let sub_reader = user(&mut op, &sub, "rita").await;
    let mut project = async |company: &str, name: &str| {
        op.create_project(pb::CreateProjectRequest {
            company_id: company.into(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
    };
    let gc_project = project(&gc, "Harbor Tower").await;
    let sub_project = project(&sub, "Harbor Tower - Electrical").await;
    let mut op = app.directory_as_operator();
    for (p, u, perms) in [
        (&gc_project, &gc_admin, perms(L::Admin, L::Admin)),
        (&gc_project, &gc_member, perms(L::None, L::Standard)),
        (&gc_project, &sub_admin, perms(L::None, L::ReadOnly)),
        (&sub_project, &sub_admin, perms(L::Admin, L::Admin)),
        (&sub_project, &sub_reader, perms(L::Admin, L::ReadOnly)),
    ] {
        op.add_project_member(pb::AddProjectMemberRequest {
            project_id: p.clone(),
            user_id: u.clone(),
            permissions: Some(perms),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    World {
        app,
        gc_admin,
        gc_member,
        sub_admin,
        sub_reader,
        gc_project,
        sub_project,
        sub_company: sub,
    }
}

fn request(project: &str, title: &str) -> spb::CreateSubmittalRequest {
    spb::CreateSubmittalRequest {
        project_id: project.into(),
        title: title.into(),
        specification_section: "26 24 13".into(),
        r#type: "Shop Drawing".into(),
        description: format!("{title} for review"),
        responsible_contractor: "Ridgeline Electric".into(),
        due_date: "2026-04-01".into(),
        received_date: "2026-03-02".into(),
        ..Default::default()
    }
}

impl World {
    fn submittals(&self, user: &str) -> Submittals {
        self.app.submittals(&self.app.user_token(user))
    }

    async fn create(&self, r: spb::CreateSubmittalRequest) -> spb::Submittal {
        self.submittals(&self.gc_admin)
            .create_submittal(r)
            .await
            .unwrap()
            .into_inner()
    }

    async fn distribute(
        &self,
        s: &spb::Submittal,
        files: &[&str],
        message: &str,
    ) -> spb::Distribution {
        self.submittals(&self.gc_admin)
            .distribute_submittal(spb::DistributeSubmittalRequest {
                submittal_id: s.id.clone(),
                recipient_ids: Vec::new(),
                message: message.into(),
                attachment_file_ids: files.iter().map(|f| f.to_string()).collect(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn respond(
        &self,
        user: &str,
        s: &spb::Submittal,
        response: A,
        files: &[&str],
    ) -> Result<spb::Submittal, Status> {
        self.submittals(user)
            .add_approver_response(spb::AddApproverResponseRequest {
                submittal_id: s.id.clone(),
                response: response as i32,
                comment: format!("{response:?} by {user}"),
                attachment_file_ids: files.iter().map(|f| f.to_string()).collect(),
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn upload(&self, user: &str, name: &str, content: &[u8]) -> spb::File {
        use spb::upload_file_request::{Header, Part};
        self.submittals(user)
            .upload_file(tokio_stream::iter(vec![
                spb::UploadFileRequest {
                    part: Some(Part::Header(Header {
                        project_id: self.gc_project.clone(),
                        filename: name.into(),
                        content_type: "application/pdf".into(),
                    })),
                },
                spb::UploadFileRequest {
                    part: Some(Part::Chunk(content.to_vec())),
                },
            ]))
            .await
            .unwrap()
            .into_inner()
    }

    async fn download(&self, user: &str, file_id: &str) -> (spb::File, Vec<u8>) {
        let mut stream = self
            .submittals(user)
            .download_file(spb::DownloadFileRequest { id: file_id.into() })
            .await
            .unwrap()
            .into_inner();
        let (mut file, mut bytes) = (spb::File::default(), Vec::new());
        while let Some(msg) = stream.message().await.unwrap() {
            match msg.part {
                Some(spb::download_file_response::Part::File(f)) => file = f,
                Some(spb::download_file_response::Part::Chunk(c)) => bytes.extend(c),
                None => {}
            }
        }
        (file, bytes)
    }

    async fn connect(&self) -> cpb::Connection {
        self.app
            .connections(&self.app.user_token(&self.sub_admin))
            .request_connection(cpb::RequestConnectionRequest {
                downstream_project_id: self.sub_project.clone(),
                upstream_project_id: self.gc_project.clone(),
                features: vec![F::Submittals as i32],
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn in_sync(&self, c: &cpb::Connection) -> spb::SyncStatus {
        eventually("the submittal backfill", WAIT, || async {
            self.submittals(&self.sub_admin)
                .get_sync_status(spb::GetSyncStatusRequest {
                    connection_id: c.id.clone(),
                })
                .await
                .ok()
                .map(|r| r.into_inner())
                .filter(|s| s.state() == spb::SyncState::InSync)
        })
        .await
    }

    async fn copies(&self) -> Vec<spb::Submittal> {
        self.submittals(&self.sub_admin)
            .list_submittals(spb::ListSubmittalsRequest {
                project_id: self.sub_project.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .submittals
            .into_iter()
            .filter(|s| s.connected)
            .collect()
    }

    async fn copy_of(&self, upstream: &spb::Submittal) -> Option<spb::Submittal> {
        self.copies().await.into_iter().find(|c| {
            c.origin
                .as_ref()
                .is_some_and(|o| o.upstream_id == upstream.id)
        })
    }

    async fn copy_until(
        &self,
        upstream: &spb::Submittal,
        what: &str,
        ok: impl Fn(&spb::Submittal) -> bool,
    ) -> spb::Submittal {
        eventually(what, WAIT, || async {
            self.copy_of(upstream).await.filter(|c| ok(c))
        })
        .await
    }

    async fn distributions(&self, user: &str, s: &spb::Submittal) -> Vec<spb::Distribution> {
        self.submittals(user)
            .list_distributions(spb::ListDistributionsRequest {
                submittal_id: s.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .distributions
    }

    /// A distributed submittal with Ridgeline's admin as approver.
    async fn shared(&self, title: &str) -> spb::Submittal {
        let mut r = request(&self.gc_project, title);
        r.approver_ids = vec![self.sub_admin.clone()];
        let s = self.create(r).await;
        self.distribute(&s, &[], "for the record").await;
        s
    }

    /// Waits until submittal-sync handled every event it wrote about `s` and finished any
    /// copy work they queued.
    async fn handled(&self, s: &spb::Submittal) {
        let db = self.app.db(Service::SubmittalSync).clone();
        let subject = format!("submittals/{}", s.id);
        eventually("the events handled", WAIT, || async {
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM outbox o WHERE o.subject = $1 AND NOT EXISTS
                   (SELECT 1 FROM inbox i WHERE i.consumer = 'submittal-sync-copies' AND i.event_id = o.event_id)",
            )
            .bind(&subject)
            .fetch_one(db.pool())
            .await
            .ok()?;
            let work: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_work")
                .fetch_one(db.pool())
                .await
                .ok()?;
            (pending == 0 && work == 0).then_some(())
        })
        .await
    }
}

#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, Status>, expected: &str) {
    let status = result.expect_err("should be refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some(expected), "{status:?}");
}

async fn s01_only_distributed_submittals_with_a_downstream_participant(backend: Backend) {
    let w = world(backend).await;
    let kinds = [
        "manager",
        "submitter",
        "approver",
        "distribution",
        "recipient",
        "none",
    ];
    let mut expected = Vec::new();
    let mut waiting = None;
    for kind in kinds {
        for distributed in [true, false] {
            let title = format!("{kind} distributed={distributed}");
            let mut r = request(&w.gc_project, &title);
            r.approver_ids = vec![w.gc_member.clone()];
            match kind {
                "manager" => r.manager_id = w.sub_admin.clone(),
                "submitter" => r.submitter_id = w.sub_admin.clone(),
                "approver" => r.approver_ids.push(w.sub_admin.clone()),
                "distribution" => r.distribution_ids = vec![w.sub_admin.clone()],
                _ => {}
            }
            let s = w.create(r).await;
            if distributed {
                let recipients = if kind == "recipient" {
                    vec![w.sub_admin.clone()]
                } else {
                    vec![w.gc_member.clone()]
                };
                w.submittals(&w.gc_admin)
                    .distribute_submittal(spb::DistributeSubmittalRequest {
                        submittal_id: s.id.clone(),
                        recipient_ids: recipients,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            } else if kind == "approver" {
                waiting = Some(s.clone());
            }
            expected.push((title, distributed && kind != "none"));
        }
    }
    let c = w.connect().await;
    let status = w.in_sync(&c).await;
    let mut want: Vec<String> = expected
        .iter()
        .filter(|(_, c)| *c)
        .map(|(t, _)| t.clone())
        .collect();
    want.sort();
    assert_eq!(status.items_copied, want.len() as i64);
    assert_eq!(status.items_total, want.len() as i64);
    let mut got: Vec<String> = w.copies().await.into_iter().map(|c| c.title).collect();
    got.sort();
    assert_eq!(got, want);

    // Live (issue 17): one with no Ridgeline participant, distributed now, stays
    // upstream; distributing one Ridgeline approves right after is the barrier that shows
    // its copy would have arrived by now.
    let mut r = request(&w.gc_project, "live none");
    r.approver_ids = vec![w.gc_member.clone()];
    let unshared = w.create(r).await;
    w.distribute(&unshared, &[], "internal").await;
    let waiting = waiting.unwrap();
    w.distribute(&waiting, &[], "now").await;
    w.copy_until(&waiting, "the live copy", |_| true).await;
    assert!(
        w.copy_of(&unshared).await.is_none(),
        "a submittal without a downstream participant was copied live"
    );
    assert_eq!(w.copies().await.len(), want.len() + 1);
    w.app.stop().await;
}

async fn s02_each_distribution_updates_the_general_information_and_summary(backend: Backend) {
    let w = world(backend).await;
    let s = w.shared("Switchgear").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    let copy = w.copy_of(&s).await.unwrap();
    let same = |x: &spb::Submittal| {
        (
            x.number,
            x.revision,
            x.title.clone(),
            x.specification_section.clone(),
            x.r#type.clone(),
            x.description.clone(),
            x.manager_id.clone(),
            x.submitter_id.clone(),
            x.responsible_contractor.clone(),
            x.due_date.clone(),
            x.received_date.clone(),
            x.distribution_ids.clone(),
        )
    };
    let upstream = w
        .submittals(&w.gc_admin)
        .get_submittal(spb::GetSubmittalRequest { id: s.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same(&copy), same(&upstream));
    assert_eq!(w.distributions(&w.sub_admin, &copy).await.len(), 1);

    // An edit alone changes nothing downstream; the next distribution carries it.
    w.submittals(&w.gc_admin)
        .update_submittal(spb::UpdateSubmittalRequest {
            submittal: Some(spb::Submittal {
                id: s.id.clone(),
                title: "Switchgear, revised layout".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
        })
        .await
        .unwrap();
    w.respond(&w.sub_admin, &s, A::ApprovedAsNoted, &[])
        .await
        .unwrap();
    assert_eq!(w.copy_of(&s).await.unwrap().title, "Switchgear");
    w.distribute(&s, &[], "Approved as noted: see comments")
        .await;
    let copy = w
        .copy_until(&s, "the second distribution", |c| {
            c.title == "Switchgear, revised layout"
        })
        .await;
    assert_eq!(copy.approvers[0].response(), A::ApprovedAsNoted);
    let dists = w.distributions(&w.sub_admin, &copy).await;
    assert_eq!(dists.len(), 2);
    let last = &dists[1];
    assert_eq!(last.message, "Approved as noted: see comments");
    assert_eq!(last.distributed_by, w.gc_admin);
    assert!(
        last.responses[0].contains("Approved as noted"),
        "{:?}",
        last.responses
    );
    assert!(last.distribute_time.is_some());
    w.app.stop().await;
}

async fn s03_the_cover_sheet_downstream_is_a_byte_identical_replica(backend: Backend) {
    let w = world(backend).await;
    let s = w.shared("Panelboard schedule").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    let copy = w.copy_of(&s).await.unwrap();
    let upstream = w.distributions(&w.gc_admin, &s).await;
    let (uf, ub) = w
        .download(&w.gc_admin, &upstream[0].cover_sheet_file_id)
        .await;
    let (df, db) = w.download(&w.sub_admin, &copy.cover_sheet_file_id).await;
    assert_ne!(uf.id, df.id);
    assert_eq!(df.project_id, w.sub_project);
    assert_eq!(ub, db, "the same bytes");
    assert_eq!(uf.sha256, df.sha256);
    let text = submittal_sync::pdf::text_of(&db).unwrap();
    assert!(
        text.contains(&format!(
            "Submittal #{} rev 0: Panelboard schedule",
            s.number
        )),
        "{text}"
    );
    assert!(text.contains("for the record"), "{text}");
    w.app.stop().await;
}

async fn s04_only_the_attachments_selected_in_a_distribution_are_copied(backend: Backend) {
    let w = world(backend).await;
    let a = w
        .upload(&w.gc_admin, "cut-sheet.pdf", b"%PDF-1.4 cut sheet")
        .await;
    let b = w
        .upload(&w.gc_admin, "internal-notes.pdf", b"%PDF-1.4 internal")
        .await;
    let mut r = request(&w.gc_project, "Fixtures");
    r.approver_ids = vec![w.sub_admin.clone()];
    r.attachment_file_ids = vec![a.id.clone(), b.id.clone()];
    let s = w.create(r).await;
    let markup = w
        .upload(&w.sub_admin, "markup.pdf", b"%PDF-1.4 approver markup")
        .await;
    w.respond(&w.sub_admin, &s, A::Approved, &[&markup.id])
        .await
        .unwrap();
    // Only what the revision or its responses carry may be selected.
    let stray = w.upload(&w.gc_admin, "stray.pdf", b"%PDF-1.4 stray").await;
    refused(
        w.submittals(&w.gc_admin)
            .distribute_submittal(spb::DistributeSubmittalRequest {
                submittal_id: s.id.clone(),
                attachment_file_ids: vec![stray.id.clone()],
                ..Default::default()
            })
            .await,
        "ATTACHMENT_NOT_IN_SUBMITTAL",
    );
    w.distribute(&s, &[&a.id, &markup.id], "cut sheet and markup")
        .await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    let copy = w.copy_of(&s).await.unwrap();
    assert_eq!(copy.attachment_file_ids.len(), 2);
    let mut names = Vec::new();
    for id in &copy.attachment_file_ids {
        let (f, bytes) = w.download(&w.sub_admin, id).await;
        assert_eq!(f.project_id, w.sub_project);
        names.push((f.filename, bytes));
    }
    names.sort();
    assert_eq!(
        names,
        vec![
            ("cut-sheet.pdf".to_string(), b"%PDF-1.4 cut sheet".to_vec()),
            (
                "markup.pdf".to_string(),
                b"%PDF-1.4 approver markup".to_vec()
            ),
        ]
    );
    // Nothing else reached Ridgeline's storage: two attachments and the cover sheet.
    assert_eq!(w.app.stored_files(&w.sub_company, &w.sub_project), 3);
    w.app.stop().await;
}

async fn s05_a_new_revision_marks_the_copy_outdated_until_distributed(backend: Backend) {
    let w = world(backend).await;
    let s = w.shared("Conduit routing").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    assert!(!w.copy_of(&s).await.unwrap().outdated);
    w.submittals(&w.gc_admin)
        .create_submittal_revision(spb::CreateSubmittalRevisionRequest {
            submittal_id: s.id.clone(),
            attachment_file_ids: Vec::new(),
        })
        .await
        .unwrap();
    let copy = w
        .copy_until(&s, "OUTDATED downstream", |c| c.outdated)
        .await;
    assert_eq!(copy.revision, 0, "the new revision is not distributed yet");
    w.distribute(&s, &[], "revision 1").await;
    let copy = w
        .copy_until(&s, "revision 1 downstream", |c| {
            c.revision == 1 && !c.outdated
        })
        .await;
    assert_eq!(copy.status(), S::Open);
    let sub = w.submittals(&w.gc_admin);
    sub.clone()
        .close_submittal(spb::CloseSubmittalRequest { id: s.id.clone() })
        .await
        .unwrap();
    w.copy_until(&s, "CLOSED downstream", |c| c.status() == S::Closed)
        .await;
    sub.clone()
        .reopen_submittal(spb::ReopenSubmittalRequest { id: s.id.clone() })
        .await
        .unwrap();
    w.copy_until(&s, "REOPENED downstream", |c| c.status() == S::Reopened)
        .await;
    sub.clone()
        .delete_submittal(spb::DeleteSubmittalRequest { id: s.id.clone() })
        .await
        .unwrap();
    w.copy_until(&s, "DELETED downstream", |c| c.status() == S::Deleted)
        .await;
    assert_eq!(w.in_sync(&c).await.items_copied, 1);
    w.app.stop().await;
}

async fn s06_copies_are_read_only_links_stay_downstream_and_disconnect_marks_them(
    backend: Backend,
) {
    let w = world(backend).await;
    let s = w.shared("Grounding plan").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    let copy = w.copy_of(&s).await.unwrap();
    let sub = w.submittals(&w.sub_admin);
    refused(
        sub.clone()
            .close_submittal(spb::CloseSubmittalRequest {
                id: copy.id.clone(),
            })
            .await,
        "CONNECTED_READ_ONLY",
    );
    refused(
        sub.clone()
            .distribute_submittal(spb::DistributeSubmittalRequest {
                submittal_id: copy.id.clone(),
                ..Default::default()
            })
            .await,
        "CONNECTED_READ_ONLY",
    );
    refused(
        sub.clone()
            .create_submittal_revision(spb::CreateSubmittalRevisionRequest {
                submittal_id: copy.id.clone(),
                ..Default::default()
            })
            .await,
        "CONNECTED_READ_ONLY",
    );
    refused(
        sub.clone()
            .delete_submittal(spb::DeleteSubmittalRequest {
                id: copy.id.clone(),
            })
            .await,
        "CONNECTED_READ_ONLY",
    );
    // Ridgeline links its own submittal to the copy; nothing travels upstream.
    let own = sub
        .clone()
        .create_submittal(request(&w.sub_project, "Our grounding details"))
        .await
        .unwrap()
        .into_inner();
    let linked = sub
        .clone()
        .link_submittal(spb::LinkSubmittalRequest {
            submittal_id: own.id.clone(),
            connected_submittal_id: copy.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(linked.linked_submittal_ids, vec![copy.id.clone()]);
    assert_eq!(
        w.copy_of(&s).await.unwrap().linked_submittal_ids,
        vec![own.id.clone()]
    );
    refused(
        sub.clone()
            .link_submittal(spb::LinkSubmittalRequest {
                submittal_id: own.id.clone(),
                connected_submittal_id: own.id.clone(),
            })
            .await,
        "NOT_A_CONNECTED_SUBMITTAL",
    );
    let up = w
        .submittals(&w.gc_admin)
        .get_submittal(spb::GetSubmittalRequest { id: s.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(up.linked_submittal_ids.is_empty());

    // After a disconnection the copies stay, marked; nothing more is applied.
    w.app
        .connections(&w.app.user_token(&w.gc_admin))
        .disconnect_connection(cpb::DisconnectConnectionRequest {
            id: c.id.clone(),
            reason: "scope moved".into(),
        })
        .await
        .unwrap();
    w.copy_until(&s, "the copy marked disconnected", |c| c.disconnected)
        .await;
    eventually("the sync stopped", WAIT, || async {
        w.submittals(&w.sub_admin)
            .get_sync_status(spb::GetSyncStatusRequest {
                connection_id: c.id.clone(),
            })
            .await
            .ok()
            .filter(|s| s.get_ref().state() == spb::SyncState::Stopped)
    })
    .await;
    let later = w.shared("After the disconnection").await;
    w.handled(&later).await;
    assert!(w.copy_of(&later).await.is_none());
    w.app.stop().await;
}

async fn n05_initial_submittal_sync_complete_reaches_the_downstream_submittals_list(
    backend: Backend,
) {
    let w = world(backend).await;
    w.shared("One").await;
    w.shared("Two").await;
    w.shared("Three").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    let inbox = |user: String| {
        let client = w.app.notifications(&w.app.user_token(&user));
        async move {
            client
                .clone()
                .list_notifications(npb::ListNotificationsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .notifications
        }
    };
    let done = eventually("N5 for submittals", WAIT, || async {
        inbox(w.sub_admin.clone())
            .await
            .into_iter()
            .find(|n| n.kind() == K::InitialSyncComplete)
    })
    .await;
    assert!(done.subject.contains("3 submittals"), "{done:?}");
    assert_eq!(done.project_id, w.sub_project);
    // Rita is a Connection Manager admin downstream but not a Submittals admin.
    assert!(
        inbox(w.sub_reader.clone())
            .await
            .iter()
            .all(|n| n.kind() != K::InitialSyncComplete)
    );
    w.app.stop().await;
}

async fn submittal_approvals_permissions_and_bad_input(backend: Backend) {
    let w = world(backend).await;
    for (r, field) in [
        (request(&w.gc_project, ""), "title"),
        (
            spb::CreateSubmittalRequest {
                due_date: "2026-13-01".into(),
                ..request(&w.gc_project, "x")
            },
            "due_date",
        ),
        (
            spb::CreateSubmittalRequest {
                approver_ids: vec!["usr_nobody".into()],
                ..request(&w.gc_project, "x")
            },
            "approver_ids[0]",
        ),
    ] {
        let status = w
            .submittals(&w.gc_admin)
            .create_submittal(r)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(bad_field(&status).as_deref(), Some(field), "{status:?}");
    }
    // Approvers answer in order.
    let mut r = request(&w.gc_project, "Ordered");
    r.approver_ids = vec![w.gc_member.clone(), w.sub_admin.clone()];
    let s = w.create(r).await;
    refused(
        w.respond(&w.sub_admin, &s, A::Approved, &[]).await,
        "NOT_YOUR_TURN",
    );
    refused(
        w.respond(&w.gc_admin, &s, A::Approved, &[]).await,
        "NOT_AN_APPROVER",
    );
    w.respond(&w.gc_member, &s, A::ReviseAndResubmit, &[])
        .await
        .unwrap();
    let s = w.respond(&w.sub_admin, &s, A::Rejected, &[]).await.unwrap();
    assert_eq!(s.approvers[1].response(), A::Rejected);
    // READ_ONLY members cannot create; outsiders do not see the project.
    let status = w
        .submittals(&w.sub_admin)
        .create_submittal(request(&w.gc_project, "x"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = w
        .submittals(&w.sub_reader)
        .get_submittal(spb::GetSubmittalRequest { id: s.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // Only admins and the manager distribute; a retried create makes one submittal.
    let status = w
        .submittals(&w.gc_member)
        .distribute_submittal(spb::DistributeSubmittalRequest {
            submittal_id: s.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let mut r = request(&w.gc_project, "Retry me");
    r.request_id = "retry-1".into();
    assert_eq!(w.create(r.clone()).await.id, w.create(r).await.id);
    w.app.stop().await;
}

async fn an_undone_submittal_connection_leaves_no_copies(backend: Backend) {
    let w = world(backend).await;
    let s = w.shared("Undo me").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    w.copy_until(&s, "the copy", |_| true).await;
    w.app
        .connections(&w.app.user_token(&w.sub_admin))
        .undo_connection(cpb::UndoConnectionRequest { id: c.id.clone() })
        .await
        .unwrap();
    eventually("the copies withdrawn", WAIT, || async {
        w.copies().await.is_empty().then_some(())
    })
    .await;
    let left = w.app.stored_files(&w.sub_company, &w.sub_project);
    assert_eq!(left, 0, "no copied files left");
    w.app.stop().await;
}

on_both_backends!(
    s01_only_distributed_submittals_with_a_downstream_participant,
    s02_each_distribution_updates_the_general_information_and_summary,
    s03_the_cover_sheet_downstream_is_a_byte_identical_replica,
    s04_only_the_attachments_selected_in_a_distribution_are_copied,
    s05_a_new_revision_marks_the_copy_outdated_until_distributed,
    s06_copies_are_read_only_links_stay_downstream_and_disconnect_marks_them,
    n05_initial_submittal_sync_complete_reaches_the_downstream_submittals_list,
    submittal_approvals_permissions_and_bad_input,
    an_undone_submittal_connection_leaves_no_copies,
    s04_an_approvers_attachment_not_selected_is_not_named_by_the_copy,
    concurrent_creates_in_one_project_all_succeed_with_distinct_numbers,
);

/// S4 (issue 17): an approver's attachment that the distribution did not select never
/// appears in the copy, not even as an upstream id among the approvers' answers; one that
/// was selected appears as its downstream copy.
async fn s04_an_approvers_attachment_not_selected_is_not_named_by_the_copy(backend: Backend) {
    let w = world(backend).await;
    let mut r = request(&w.gc_project, "Panels");
    r.approver_ids = vec![w.sub_admin.clone()];
    let s = w.create(r).await;
    let markup = w
        .upload(&w.sub_admin, "markup.pdf", b"%PDF-1.4 approver markup")
        .await;
    w.respond(&w.sub_admin, &s, A::Approved, &[&markup.id])
        .await
        .unwrap();
    w.distribute(&s, &[], "no attachments").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    let copy = w.copy_of(&s).await.unwrap();
    assert!(copy.attachment_file_ids.is_empty(), "{copy:?}");
    assert_eq!(copy.approvers.len(), 1);
    assert!(
        copy.approvers[0].attachment_file_ids.is_empty(),
        "an unselected attachment is named by the copy: {:?}",
        copy.approvers[0]
    );
    // Selected in a later distribution: the copy names its downstream copy.
    w.distribute(&s, &[&markup.id], "with the markup").await;
    let copy = w
        .copy_until(&s, "the second distribution copied", |c| {
            c.attachment_file_ids.len() == 1
        })
        .await;
    assert_eq!(
        copy.approvers[0].attachment_file_ids,
        copy.attachment_file_ids
    );
    let (f, bytes) = w.download(&w.sub_admin, &copy.attachment_file_ids[0]).await;
    assert_eq!(f.project_id, w.sub_project);
    assert_eq!(bytes, b"%PDF-1.4 approver markup");
    w.app.stop().await;
}

/// Issue 17: people filing submittals at the same moment all succeed; each gets its own
/// number (from the project's counter, inside the create's transaction).
async fn concurrent_creates_in_one_project_all_succeed_with_distinct_numbers(backend: Backend) {
    let w = world(backend).await;
    let creates = (0..8).map(|i| {
        let mut client = w.submittals(&w.gc_admin);
        let r = request(&w.gc_project, &format!("Concurrent {i}"));
        async move { client.create_submittal(r).await }
    });
    let mut numbers: Vec<i64> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| {
            r.expect("every concurrent create succeeds")
                .into_inner()
                .number
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=8).collect::<Vec<i64>>());
    w.app.stop().await;
}
