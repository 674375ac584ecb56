//! RFIs and their one-way sync, through gRPC across the directory, the connection manager,
//! drawings-sync (linked drawings), rfi-sync and notification (R1-R6, N5).

use std::time::Duration;

use connectability_platform::errors::{bad_field, reason};
use connectability_proto::{
    connections::v1::{self as cpb, Feature as F},
    directory::v1::{self as pb, PermissionLevel as L},
    drawings::v1 as dpb,
    notifications::v1::{self as npb, NotificationKind as K},
    rfis::v1::{self as rpb, RfiStatus as S},
};
use connectability_testkit::{AuthedChannel, Backend, Options, Service, TestApp, eventually};
use rfi_sync::pdf;
use tonic::{Code, Status};

type Directory = pb::directory_service_client::DirectoryServiceClient<AuthedChannel>;
type Rfis = rpb::rfi_service_client::RfiServiceClient<AuthedChannel>;

const WAIT: Duration = Duration::from_secs(30);

fn perms(cm: L, drawings: L, rfis: L) -> pb::ToolPermissions {
    pb::ToolPermissions {
        connection_manager: cm as i32,
        drawings: drawings as i32,
        rfis: rfis as i32,
        submittals: L::None as i32,
    }
}

/// A GC project (upstream) and a subcontractor project (downstream).
struct World {
    app: TestApp,
    gc: String,
    gc_admin: String,
    /// A GC employee with STANDARD on RFIs upstream.
    gc_member: String,
    /// Ridgeline's admin: ADMIN downstream, STANDARD on RFIs upstream.
    sub_admin: String,
    /// A Ridgeline employee: Drawings ADMIN downstream but only READ_ONLY on RFIs.
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

async fn world(backend: Backend) -> World {
    // A small upload cap, so a test can exceed it cheaply.
    let options = Options {
        rfis: rfi_sync::Limits {
            max_upload_bytes: 1024 * 1024,
        },
        ..Default::default()
    };
    let app = TestApp::spawn_with(
        backend,
        &[
            Service::Directory,
            Service::DrawingsSync,
            Service::RfiSync,
            Service::ConnectionManager,
            Service::Notification,
        ],
        options,
    )
    .await;
    let mut op = app.directory_as_operator();
    let gc = company(&mut op, "Summit GC").await;
    let sub = company(&mut op, "Ridgeline Electric").await;
    let gc_admin = user(&mut op, &gc, "gina").await;
    let gc_member = user(&mut op, &gc, "sam").await;
    let sub_admin = user(&mut op, &sub, "raj").await;
    let sub_reader = user(&mut op, &sub, "rita").await;
    for (c, u) in [(&gc, &gc_admin), (&sub, &sub_admin)] {
        op.set_company_admin(pb::SetCompanyAdminRequest {
            company_id: c.clone(),
            user_id: u.clone(),
            admin: true,
        })
        .await
        .unwrap();
    }
    let gc_project = project(&mut op, &gc, "Harbor Tower").await;
    let sub_project = project(&mut op, &sub, "Harbor Tower - Electrical").await;
    member(
        &mut op,
        &gc_project,
        &gc_admin,
        perms(L::Admin, L::Admin, L::Admin),
    )
    .await;
    member(
        &mut op,
        &gc_project,
        &gc_member,
        perms(L::None, L::ReadOnly, L::Standard),
    )
    .await;
    member(
        &mut op,
        &gc_project,
        &sub_admin,
        perms(L::None, L::ReadOnly, L::Standard),
    )
    .await;
    member(
        &mut op,
        &sub_project,
        &sub_admin,
        perms(L::Admin, L::Admin, L::Admin),
    )
    .await;
    member(
        &mut op,
        &sub_project,
        &sub_reader,
        perms(L::None, L::Admin, L::ReadOnly),
    )
    .await;
    World {
        app,
        gc,
        gc_admin,
        gc_member,
        sub_admin,
        sub_reader,
        gc_project,
        sub_project,
        sub_company: sub,
    }
}

fn request(project: &str, subject: &str) -> rpb::CreateRfiRequest {
    rpb::CreateRfiRequest {
        project_id: project.into(),
        subject: subject.into(),
        question: format!("Question about {subject}?"),
        responsible_contractor: "Summit Steel".into(),
        date_initiated: "2026-03-02".into(),
        due_date: "2026-03-16".into(),
        ..Default::default()
    }
}

impl World {
    fn rfis(&self, user: &str) -> Rfis {
        self.app.rfis(&self.app.user_token(user))
    }

    async fn create(&self, user: &str, r: rpb::CreateRfiRequest) -> rpb::Rfi {
        self.rfis(user).create_rfi(r).await.unwrap().into_inner()
    }

    async fn respond(&self, user: &str, rfi: &rpb::Rfi, body: &str, files: &[&str]) -> rpb::Rfi {
        self.rfis(user)
            .add_rfi_response(rpb::AddRfiResponseRequest {
                rfi_id: rfi.id.clone(),
                body: body.into(),
                attachment_file_ids: files.iter().map(|f| f.to_string()).collect(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn close(&self, rfi: &rpb::Rfi) -> rpb::Rfi {
        self.rfis(&self.gc_admin)
            .close_rfi(rpb::CloseRfiRequest { id: rfi.id.clone() })
            .await
            .unwrap()
            .into_inner()
    }

    /// A closed upstream RFI with an official answer.
    async fn closed(&self, subject: &str) -> rpb::Rfi {
        let rfi = self
            .create(&self.gc_admin, request(&self.gc_project, subject))
            .await;
        let rfi = self
            .respond(&self.gc_member, &rfi, &format!("Answer to {subject}"), &[])
            .await;
        self.rfis(&self.gc_admin)
            .mark_official_response(rpb::MarkOfficialResponseRequest {
                rfi_id: rfi.id.clone(),
                response_id: rfi.responses[0].id.clone(),
            })
            .await
            .unwrap();
        self.close(&rfi).await
    }

    async fn upload(
        &self,
        user: &str,
        project: &str,
        name: &str,
        content: Vec<u8>,
    ) -> Result<rpb::File, Status> {
        use rpb::upload_file_request::{Header, Part};
        let messages = vec![
            rpb::UploadFileRequest {
                part: Some(Part::Header(Header {
                    project_id: project.into(),
                    filename: name.into(),
                    content_type: "application/octet-stream".into(),
                })),
            },
            rpb::UploadFileRequest {
                part: Some(Part::Chunk(content)),
            },
        ];
        self.rfis(user)
            .upload_file(tokio_stream::iter(messages))
            .await
            .map(|r| r.into_inner())
    }

    async fn download(&self, user: &str, file_id: &str) -> (rpb::File, Vec<u8>) {
        let mut stream = self
            .rfis(user)
            .download_file(rpb::DownloadFileRequest { id: file_id.into() })
            .await
            .unwrap()
            .into_inner();
        let (mut file, mut bytes) = (rpb::File::default(), Vec::new());
        while let Some(msg) = stream.message().await.unwrap() {
            match msg.part {
                Some(rpb::download_file_response::Part::File(f)) => file = f,
                Some(rpb::download_file_response::Part::Chunk(c)) => bytes.extend(c),
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
                features: vec![F::Rfis as i32],
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn in_sync(&self, c: &cpb::Connection) -> rpb::SyncStatus {
        eventually("the RFI backfill", WAIT, || async {
            self.rfis(&self.sub_admin)
                .get_sync_status(rpb::GetSyncStatusRequest {
                    connection_id: c.id.clone(),
                })
                .await
                .ok()
                .map(|r| r.into_inner())
                .filter(|s| s.state() == rpb::SyncState::InSync)
        })
        .await
    }

    async fn list(&self, user: &str, project: &str) -> Vec<rpb::Rfi> {
        self.rfis(user)
            .list_rfis(rpb::ListRfisRequest {
                project_id: project.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .rfis
    }

    /// The downstream copies, by upstream id, as the downstream admin sees them.
    async fn copies(&self) -> Vec<rpb::Rfi> {
        self.list(&self.sub_admin, &self.sub_project)
            .await
            .into_iter()
            .filter(|r| r.connected)
            .collect()
    }

    async fn copy_of(&self, upstream: &rpb::Rfi) -> Option<rpb::Rfi> {
        self.copies().await.into_iter().find(|c| {
            c.origin
                .as_ref()
                .is_some_and(|o| o.upstream_id == upstream.id)
        })
    }

    async fn copy_until(
        &self,
        upstream: &rpb::Rfi,
        what: &str,
        ok: impl Fn(&rpb::Rfi) -> bool,
    ) -> rpb::Rfi {
        eventually(what, WAIT, || async {
            self.copy_of(upstream).await.filter(|c| ok(c))
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

async fn r01_only_closed_rfis_are_copied_by_backfill_and_on_close(backend: Backend) {
    let w = world(backend).await;
    let before = w.closed("Beam pocket at C4").await;
    let open = w
        .create(&w.gc_admin, request(&w.gc_project, "Slab embeds"))
        .await;
    let c = w.connect().await;
    let status = w.in_sync(&c).await;
    assert_eq!((status.items_total, status.items_copied), (1, 1));
    let copies = w.copies().await;
    assert_eq!(copies.len(), 1, "only the closed RFI: {copies:?}");
    assert_eq!(copies[0].origin.as_ref().unwrap().upstream_id, before.id);

    // Closing later copies at once; an open RFI never leaves.
    assert!(w.copy_of(&open).await.is_none());
    let open = w.respond(&w.gc_admin, &open, "4 ft governs", &[]).await;
    w.close(&open).await;
    let copy = w.copy_until(&open, "the live copy", |_| true).await;
    assert_eq!(copy.status(), S::Closed);
    let status = w.in_sync(&c).await;
    assert_eq!((status.items_total, status.items_copied), (2, 2));
    w.app.stop().await;
}

async fn r02_private_rfis_need_a_downstream_participant(backend: Backend) {
    let w = world(backend).await;
    // (how Ridgeline takes part, private) -> copied?
    let kinds = [
        "creator",
        "manager",
        "assignee",
        "distribution",
        "received_from",
        "none",
    ];
    let mut expected = Vec::new();
    for kind in kinds {
        for private in [true, false] {
            let subject = format!("{kind} private={private}");
            let mut r = request(&w.gc_project, &subject);
            r.private = private;
            r.manager_id = w.gc_admin.clone();
            let author = match kind {
                "creator" => w.sub_admin.clone(),
                _ => w.gc_admin.clone(),
            };
            match kind {
                "manager" => r.manager_id = w.sub_admin.clone(),
                "assignee" => r.assignee_ids = vec![w.sub_admin.clone()],
                "distribution" => {
                    r.distribution_ids = vec![w.gc_member.clone(), w.sub_admin.clone()]
                }
                "received_from" => r.received_from_id = w.sub_admin.clone(),
                _ => {}
            }
            let rfi = w.create(&author, r).await;
            w.close(&rfi).await;
            let copied = !private || !matches!(kind, "received_from" | "none");
            expected.push((subject, copied));
        }
    }
    let c = w.connect().await;
    let status = w.in_sync(&c).await;
    let want: Vec<&String> = expected
        .iter()
        .filter(|(_, c)| *c)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(status.items_copied, want.len() as i64);
    let mut got: Vec<String> = w.copies().await.into_iter().map(|c| c.subject).collect();
    got.sort();
    let mut want: Vec<String> = want.into_iter().cloned().collect();
    want.sort();
    assert_eq!(got, want);

    // Upstream, a private RFI is hidden from members who take no part in it: Sam sees
    // only the one whose distribution list names him.
    let seen: Vec<String> = w
        .list(&w.gc_member, &w.gc_project)
        .await
        .into_iter()
        .filter(|r| r.private)
        .map(|r| r.subject)
        .collect();
    assert_eq!(seen, vec!["distribution private=true".to_string()]);

    // Live (issue 17): a private RFI with no Ridgeline participant, closed once the
    // connection is in sync, stays upstream; a public one closed after it is the barrier
    // that shows its copy would have arrived by now.
    let mut r = request(&w.gc_project, "live private none");
    r.private = true;
    let private = w.create(&w.gc_admin, r).await;
    w.close(&private).await;
    let barrier = w.closed("live barrier").await;
    w.copy_until(&barrier, "the barrier copied", |_| true).await;
    assert!(
        w.copy_of(&private).await.is_none(),
        "a private RFI without a downstream participant was copied live"
    );
    let status = w.in_sync(&c).await;
    assert_eq!(status.items_copied, got.len() as i64 + 1, "{status:?}");
    w.app.stop().await;
}

/// A real one-page PDF with `text` on it.
fn drawing_pdf(text: &str) -> Vec<u8> {
    pdf::text_document(text, &[pdf::Line::Text(text.into())]).unwrap()
}

async fn r03_copies_carry_every_listed_field_both_pdfs_and_official_responses_only(
    backend: Backend,
) {
    let w = world(backend).await;
    // A linked drawing revision upstream (drawings-sync), with a real PDF.
    let drawings = w.app.drawings(&w.app.user_token(&w.gc_admin));
    let area = drawings
        .clone()
        .create_drawing_area(dpb::CreateDrawingAreaRequest {
            project_id: w.gc_project.clone(),
            name: "Level 1".into(),
            description: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let set = drawings
        .clone()
        .create_drawing_set(dpb::CreateDrawingSetRequest {
            project_id: w.gc_project.clone(),
            name: "IFC".into(),
            date: "2026-03-01".into(),
        })
        .await
        .unwrap()
        .into_inner();
    use dpb::upload_file_request::{Header, Part};
    let file = drawings
        .clone()
        .upload_file(tokio_stream::iter(vec![
            dpb::UploadFileRequest {
                part: Some(Part::Header(Header {
                    project_id: w.gc_project.clone(),
                    filename: "S-501.pdf".into(),
                    content_type: "application/pdf".into(),
                })),
            },
            dpb::UploadFileRequest {
                part: Some(Part::Chunk(drawing_pdf("Detail 5 beam pocket sheet S-501"))),
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    let revision = drawings
        .clone()
        .create_drawing_revision(dpb::CreateDrawingRevisionRequest {
            project_id: w.gc_project.clone(),
            area_id: area.id,
            set_id: set.id,
            number: "S-501".into(),
            title: "Details".into(),
            discipline_name: "Structural".into(),
            discipline_position: 1,
            revision_number: "0".into(),
            revision_status: "Issued".into(),
            drawing_date: "2026-02-14".into(),
            received_date: "2026-02-20".into(),
            file_id: file.id,
            custom_fields: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();

    // The upstream shows standard users only official responses: copies carry only those.
    w.rfis(&w.gc_admin)
        .update_rfi_settings(rpb::UpdateRfiSettingsRequest {
            project_id: w.gc_project.clone(),
            official_responses_only: true,
        })
        .await
        .unwrap();
    let question_file = w
        .upload(
            &w.gc_admin,
            &w.gc_project,
            "photo.jpg",
            b"JPEG bytes of the pocket".to_vec(),
        )
        .await
        .unwrap();
    let answer_file = w
        .upload(
            &w.gc_member,
            &w.gc_project,
            "sketch.png",
            b"PNG sketch".to_vec(),
        )
        .await
        .unwrap();
    let mut r = request(&w.gc_project, "Beam pocket at grid C4");
    r.question_file_ids = vec![question_file.id.clone()];
    r.received_from_id = w.gc_member.clone();
    r.assignee_ids = vec![w.gc_member.clone()];
    r.drawing_revision_ids = vec![revision.id.clone()];
    let rfi = w.create(&w.gc_admin, r).await;
    let rfi = w
        .respond(&w.gc_member, &rfi, "Draft thought, not the answer", &[])
        .await;
    let rfi = w
        .respond(
            &w.gc_member,
            &rfi,
            "Reroute the duct per detail 5/S-501",
            &[&answer_file.id],
        )
        .await;
    // Standard users see only official responses: none yet.
    assert!(rfi.responses.is_empty(), "{:?}", rfi.responses);
    let rfi = w
        .rfis(&w.gc_admin)
        .get_rfi(rpb::GetRfiRequest { id: rfi.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rfi.responses.len(), 2, "admins see every response");
    w.rfis(&w.gc_admin)
        .mark_official_response(rpb::MarkOfficialResponseRequest {
            rfi_id: rfi.id.clone(),
            response_id: rfi.responses[1].id.clone(),
        })
        .await
        .unwrap();
    let upstream = w.close(&rfi).await;
    assert_eq!(upstream.status(), S::Closed);

    // The PDF text test: the cover sheet names the number, subject and official answer; the
    // linked drawings document holds the drawing's own page.
    let (_, cover) = w.download(&w.gc_admin, &upstream.cover_sheet_file_id).await;
    let text = pdf::text_of(&cover).unwrap();
    assert!(
        text.contains(&format!("RFI #{}: Beam pocket at grid C4", upstream.number)),
        "{text}"
    );
    assert!(
        text.contains("Reroute the duct per detail 5/S-501"),
        "{text}"
    );
    assert!(!text.contains("Draft thought"), "official only: {text}");
    let (_, linked) = w
        .download(&w.gc_admin, &upstream.linked_drawings_file_id)
        .await;
    assert_eq!(
        pdf::page_count(&linked).unwrap(),
        2,
        "index page and the drawing"
    );
    let text = pdf::text_of(&linked).unwrap();
    assert!(text.contains("Detail 5 beam pocket sheet S-501"), "{text}");
    assert!(text.contains("S-501.pdf"), "{text}");

    let c = w.connect().await;
    w.in_sync(&c).await;
    let copy = w.copy_of(&upstream).await.expect("copied");
    assert!(copy.connected);
    assert_eq!(copy.project_id, w.sub_project);
    let same = |r: &rpb::Rfi| {
        (
            r.number,
            r.subject.clone(),
            r.question.clone(),
            r.status,
            r.manager_id.clone(),
            r.received_from_id.clone(),
            r.responsible_contractor.clone(),
            r.date_initiated.clone(),
            r.due_date.clone(),
            r.private,
            r.assignee_ids.clone(),
        )
    };
    assert_eq!(same(&copy), same(&upstream));
    assert_eq!(copy.responses.len(), 1, "official response only");
    assert_eq!(
        copy.responses[0].body,
        "Reroute the duct per detail 5/S-501"
    );
    assert!(copy.responses[0].official);

    // Attachments and both PDFs: new files of the downstream project, same bytes.
    let pairs = [
        (&upstream.question_file_ids[0], &copy.question_file_ids[0]),
        (
            &upstream.responses[1].attachment_file_ids[0],
            &copy.responses[0].attachment_file_ids[0],
        ),
        (&upstream.cover_sheet_file_id, &copy.cover_sheet_file_id),
        (
            &upstream.linked_drawings_file_id,
            &copy.linked_drawings_file_id,
        ),
    ];
    for (up, down) in pairs {
        assert_ne!(up, down);
        let (uf, ub) = w.download(&w.gc_admin, up).await;
        let (df, db) = w.download(&w.sub_admin, down).await;
        assert_eq!(df.project_id, w.sub_project);
        assert_eq!((uf.sha256, uf.filename), (df.sha256, df.filename));
        assert_eq!(ub, db);
    }
    // Under the downstream company's own storage prefix.
    assert_eq!(w.app.stored_files(&w.sub_company, &w.sub_project), 4);
    // The upstream company cannot read the copies' files.
    let outsider = w
        .rfis(&w.gc_admin)
        .download_file(rpb::DownloadFileRequest {
            id: copy.cover_sheet_file_id.clone(),
        })
        .await;
    assert_eq!(outsider.unwrap_err().code(), Code::NotFound);
    let _ = &w.gc;
    w.app.stop().await;
}

async fn r04_reopen_and_delete_upstream_are_reflected(backend: Backend) {
    let w = world(backend).await;
    let rfi = w.closed("Door swing").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    w.copy_until(&rfi, "the copy", |c| c.status() == S::Closed)
        .await;

    w.rfis(&w.gc_admin)
        .reopen_rfi(rpb::ReopenRfiRequest { id: rfi.id.clone() })
        .await
        .unwrap();
    w.copy_until(&rfi, "REOPENED downstream", |c| c.status() == S::Reopened)
        .await;

    // Closed again with a new answer: the copy takes the new content.
    let again = w
        .respond(&w.gc_admin, &rfi, "Revised: reverse the swing", &[])
        .await;
    w.rfis(&w.gc_admin)
        .update_rfi_settings(rpb::UpdateRfiSettingsRequest {
            project_id: w.gc_project.clone(),
            official_responses_only: false,
        })
        .await
        .unwrap();
    w.close(&again).await;
    let copy = w
        .copy_until(&rfi, "closed again downstream", |c| {
            c.status() == S::Closed && c.responses.len() == 2
        })
        .await;
    assert!(
        copy.responses
            .iter()
            .any(|r| r.body == "Revised: reverse the swing")
    );

    w.rfis(&w.gc_admin)
        .delete_rfi(rpb::DeleteRfiRequest { id: rfi.id.clone() })
        .await
        .unwrap();
    w.copy_until(&rfi, "DELETED downstream", |c| c.status() == S::Deleted)
        .await;
    let gone = w
        .rfis(&w.gc_admin)
        .get_rfi(rpb::GetRfiRequest { id: rfi.id.clone() })
        .await;
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
    let status = w.in_sync(&c).await;
    assert_eq!(status.items_copied, 1, "one RFI, however often it changed");
    w.app.stop().await;
}

async fn r05_copies_are_read_only_and_links_and_answers_stay_downstream(backend: Backend) {
    let w = world(backend).await;
    let upstream = w.closed("Panel clearance").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    let copy = w.copy_of(&upstream).await.unwrap();
    let sub = w.rfis(&w.sub_admin);

    refused(
        sub.clone()
            .update_rfi(rpb::UpdateRfiRequest {
                rfi: Some(rpb::Rfi {
                    id: copy.id.clone(),
                    subject: "mine now".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["subject".into()],
                }),
            })
            .await,
        "CONNECTED_READ_ONLY",
    );
    refused(
        sub.clone()
            .add_rfi_response(rpb::AddRfiResponseRequest {
                rfi_id: copy.id.clone(),
                body: "from downstream".into(),
                ..Default::default()
            })
            .await,
        "CONNECTED_READ_ONLY",
    );
    refused(
        sub.clone()
            .reopen_rfi(rpb::ReopenRfiRequest {
                id: copy.id.clone(),
            })
            .await,
        "CONNECTED_READ_ONLY",
    );
    refused(
        sub.clone()
            .delete_rfi(rpb::DeleteRfiRequest {
                id: copy.id.clone(),
            })
            .await,
        "CONNECTED_READ_ONLY",
    );
    refused(
        sub.clone()
            .mark_official_response(rpb::MarkOfficialResponseRequest {
                rfi_id: copy.id.clone(),
                response_id: copy.responses[0].id.clone(),
            })
            .await,
        "CONNECTED_READ_ONLY",
    );

    // Ridgeline's own RFI links to the copy and takes its official answer.
    let own = w
        .create(&w.sub_admin, request(&w.sub_project, "Our panel question"))
        .await;
    assert_eq!(own.number, 1, "numbers are per project; copies keep theirs");
    let linked = sub
        .clone()
        .link_rfi(rpb::LinkRfiRequest {
            rfi_id: own.id.clone(),
            connected_rfi_id: copy.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(linked.linked_rfi_ids, vec![copy.id.clone()]);
    let answered = sub
        .clone()
        .copy_official_answer(rpb::CopyOfficialAnswerRequest {
            rfi_id: own.id.clone(),
            connected_rfi_id: copy.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answered.responses.len(), 1);
    assert!(
        answered.responses[0]
            .body
            .contains("Answer to Panel clearance")
    );
    let copy_now = w.copy_of(&upstream).await.unwrap();
    assert_eq!(copy_now.linked_rfi_ids, vec![own.id.clone()]);
    // Linking the wrong way round or to an own RFI is refused by name.
    refused(
        sub.clone()
            .link_rfi(rpb::LinkRfiRequest {
                rfi_id: copy.id.clone(),
                connected_rfi_id: own.id.clone(),
            })
            .await,
        "CONNECTED_READ_ONLY",
    );
    refused(
        sub.clone()
            .link_rfi(rpb::LinkRfiRequest {
                rfi_id: own.id.clone(),
                connected_rfi_id: own.id.clone(),
            })
            .await,
        "NOT_A_CONNECTED_RFI",
    );

    // Nothing travels upstream.
    let up = w
        .rfis(&w.gc_admin)
        .get_rfi(rpb::GetRfiRequest {
            id: upstream.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(up.linked_rfi_ids.is_empty());
    assert_eq!(up.responses, upstream.responses);
    assert_eq!(w.list(&w.gc_admin, &w.gc_project).await.len(), 1);
    w.app.stop().await;
}

async fn r06_after_a_disconnection_copies_stay_marked_disconnected(backend: Backend) {
    let w = world(backend).await;
    let first = w.closed("Before").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    assert!(!w.copy_of(&first).await.unwrap().disconnected);
    w.app
        .connections(&w.app.user_token(&w.gc_admin))
        .disconnect_connection(cpb::DisconnectConnectionRequest {
            id: c.id.clone(),
            reason: "scope moved".into(),
        })
        .await
        .unwrap();
    w.copy_until(&first, "the copy marked disconnected", |c| c.disconnected)
        .await;
    eventually("the sync stopped", WAIT, || async {
        w.rfis(&w.sub_admin)
            .get_sync_status(rpb::GetSyncStatusRequest {
                connection_id: c.id.clone(),
            })
            .await
            .ok()
            .filter(|s| s.get_ref().state() == rpb::SyncState::Stopped)
    })
    .await;
    let later = w.closed("After").await;
    // Wait until rfi-sync's copier has handled the close event, then look.
    let db = w.app.db(Service::RfiSync).clone();
    let subject = format!("rfis/{}", later.id);
    eventually("the close handled", WAIT, || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM inbox i JOIN outbox o ON o.event_id = i.event_id
             WHERE i.consumer = 'rfi-sync-copies' AND o.subject = $1 AND o.event_type LIKE '%RfiClosed'",
        )
        .bind(&subject)
        .fetch_one(db.pool())
        .await
        .ok()?;
        (n == 1).then_some(())
    })
    .await;
    // …and until any copy work it could have queued is done.
    eventually("copy work drained", WAIT, || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_work")
            .fetch_one(db.pool())
            .await
            .ok()?;
        (n == 0).then_some(())
    })
    .await;
    assert!(w.copy_of(&later).await.is_none());
    assert_eq!(w.copies().await.len(), 1);
    w.app.stop().await;
}

async fn n05_initial_rfi_sync_complete_reaches_the_downstream_rfis_list(backend: Backend) {
    let w = world(backend).await;
    w.closed("One").await;
    w.closed("Two").await;
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
    let done = eventually("N5 for RFIs", WAIT, || async {
        inbox(w.sub_admin.clone())
            .await
            .into_iter()
            .find(|n| n.kind() == K::InitialSyncComplete)
    })
    .await;
    assert!(done.subject.contains("RFI"), "{done:?}");
    assert!(done.subject.contains("2 RFIs"), "{done:?}");
    assert_eq!(done.project_id, w.sub_project);
    // Rita is a Drawings admin downstream but not an RFIs admin: not on the RFIs list.
    assert!(
        inbox(w.sub_reader.clone())
            .await
            .iter()
            .all(|n| n.kind() != K::InitialSyncComplete)
    );
    w.app.stop().await;
}

async fn rfi_permissions_and_bad_input_are_named(backend: Backend) {
    let w = world(backend).await;
    // Bad input names the field.
    for (r, field) in [
        (request(&w.gc_project, ""), "subject"),
        (
            rpb::CreateRfiRequest {
                due_date: "2026-02-30".into(),
                ..request(&w.gc_project, "x")
            },
            "due_date",
        ),
        (
            rpb::CreateRfiRequest {
                assignee_ids: vec!["not-a-user".into()],
                ..request(&w.gc_project, "x")
            },
            "assignee_ids[0]",
        ),
        (
            rpb::CreateRfiRequest {
                distribution_ids: vec!["usr_nobody".into()],
                ..request(&w.gc_project, "x")
            },
            "distribution_ids[0]",
        ),
        (
            rpb::CreateRfiRequest {
                project_id: "nope".into(),
                ..request(&w.gc_project, "x")
            },
            "project_id",
        ),
    ] {
        let status = w.rfis(&w.gc_admin).create_rfi(r).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(bad_field(&status).as_deref(), Some(field), "{status:?}");
    }
    // A READ_ONLY member may look but not create; an outsider does not see the project.
    let status = w
        .rfis(&w.sub_reader)
        .create_rfi(request(&w.sub_project, "x"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = w
        .rfis(&w.sub_reader)
        .list_rfis(rpb::ListRfisRequest {
            project_id: w.gc_project.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // A private RFI is NOT_FOUND for a member who takes no part; the manager closes it.
    let mut r = request(&w.gc_project, "Owner budget");
    r.private = true;
    let private = w.create(&w.gc_admin, r).await;
    let status = w
        .rfis(&w.gc_member)
        .get_rfi(rpb::GetRfiRequest {
            id: private.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let open = w
        .create(&w.gc_member, request(&w.gc_project, "Sam's question"))
        .await;
    let status = w
        .rfis(&w.sub_admin)
        .close_rfi(rpb::CloseRfiRequest {
            id: open.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Sam manages his own RFI (the creator is its manager by default) and may close it.
    w.rfis(&w.gc_member)
        .close_rfi(rpb::CloseRfiRequest {
            id: open.id.clone(),
        })
        .await
        .unwrap();
    refused(
        w.rfis(&w.gc_member)
            .add_rfi_response(rpb::AddRfiResponseRequest {
                rfi_id: open.id.clone(),
                body: "late".into(),
                ..Default::default()
            })
            .await,
        "RFI_CLOSED",
    );
    // Linking a drawing that is not in the project is refused, by name.
    let mut r = request(&w.gc_project, "Linked");
    r.drawing_revision_ids = vec!["rev_doesnotexist".into()];
    refused(
        w.rfis(&w.gc_admin).create_rfi(r).await,
        "LINKED_DRAWING_NOT_FOUND",
    );
    // Uploads are capped; a retried create with the same request id creates one RFI.
    use rpb::upload_file_request::{Header, Part};
    let mut parts = vec![rpb::UploadFileRequest {
        part: Some(Part::Header(Header {
            project_id: w.gc_project.clone(),
            filename: "big.bin".into(),
            content_type: "application/octet-stream".into(),
        })),
    }];
    for _ in 0..3 {
        parts.push(rpb::UploadFileRequest {
            part: Some(Part::Chunk(vec![0; 400 * 1024])),
        });
    }
    let big = w
        .rfis(&w.gc_admin)
        .upload_file(tokio_stream::iter(parts))
        .await
        .unwrap_err();
    assert_eq!(big.code(), Code::InvalidArgument, "{big:?}");
    assert_eq!(bad_field(&big).as_deref(), Some("chunk"));
    let mut r = request(&w.gc_project, "Retry me");
    r.request_id = "retry-1".into();
    let a = w.create(&w.gc_admin, r.clone()).await;
    let b = w.create(&w.gc_admin, r).await;
    assert_eq!(a.id, b.id);
    w.app.stop().await;
}

async fn an_undone_rfi_connection_leaves_no_copies(backend: Backend) {
    let w = world(backend).await;
    let rfi = w.closed("Undo me").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    w.copy_until(&rfi, "the copy", |_| true).await;
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

async fn repeated_and_reordered_rfi_events_leave_the_same_state(backend: Backend) {
    use connectability_events::Envelope;
    use connectability_store::inbox::{Applied, InboxConsumer};
    use sqlx::Row;
    use std::sync::Arc;
    let w = world(backend).await;
    let rfi = w.closed("Replayed").await;
    let c = w.connect().await;
    w.in_sync(&c).await;
    w.rfis(&w.gc_admin)
        .reopen_rfi(rpb::ReopenRfiRequest { id: rfi.id.clone() })
        .await
        .unwrap();
    w.copy_until(&rfi, "reopened", |c| c.status() == S::Reopened)
        .await;
    let again = w.respond(&w.gc_admin, &rfi, "Second answer", &[]).await;
    w.close(&again).await;
    w.copy_until(&rfi, "closed again", |c| {
        c.status() == S::Closed && c.responses.len() == 2
    })
    .await;
    let before = w.copies().await;

    // The real events, as rfi-sync wrote them to its outbox.
    let db = w.app.db(Service::RfiSync).clone();
    let rows = sqlx::query(
        "SELECT event_id, event_type, source, subject, time_ms, traceparent, data FROM outbox ORDER BY seq",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let events: Vec<Envelope> = rows
        .iter()
        .map(|r| Envelope {
            id: r.get("event_id"),
            event_type: r.get("event_type"),
            source: r.get("source"),
            subject: r.get("subject"),
            time_ms: r.get("time_ms"),
            traceparent: r.get("traceparent"),
            data: r.get("data"),
        })
        .filter(|e| e.event_type.contains(".RfiClosed") || e.event_type.contains(".RfiReopened"))
        .collect();
    assert_eq!(events.len(), 3, "close, reopen, close");
    let core = Arc::new(rfi_sync::sync::RfiSync(connectability_sync::Engine::new(
        db.clone(),
        connectability_blobs::Blobs::from_url(&format!(
            "file://{}",
            w.app.env.dir.join("blobs").display()
        ))
        .unwrap(),
        Arc::new(w.app.clock.clone()),
        Default::default(),
        w.app.connections_gateway(rfi_sync::NAME),
    )));
    let handler = Arc::new(connectability_sync::ToolEvents(core));
    // Delivered again in order, then in reverse order (fresh inboxes, so the handler really
    // runs each time), then once more to an inbox that has them.
    let again = InboxConsumer::new(db.clone(), "replay-in-order", handler.clone());
    for e in &events {
        assert_eq!(again.apply(e).await.unwrap(), Applied::Now);
    }
    let reversed = InboxConsumer::new(db.clone(), "replay-reversed", handler.clone());
    for e in events.iter().rev() {
        assert_eq!(reversed.apply(e).await.unwrap(), Applied::Now);
    }
    assert_eq!(
        again.apply(&events[0]).await.unwrap(),
        Applied::AlreadyHandled
    );
    // The events queued copy work; once the workers have done it, nothing changed.
    eventually("the queued copies done", WAIT, || async {
        let left = connectability_sync::db::work_count(&mut *db.pool().acquire().await.ok()?)
            .await
            .ok()?;
        (left == 0).then_some(())
    })
    .await;
    assert_eq!(w.copies().await, before);
    w.app.stop().await;
}

on_both_backends!(
    r01_only_closed_rfis_are_copied_by_backfill_and_on_close,
    r02_private_rfis_need_a_downstream_participant,
    r03_copies_carry_every_listed_field_both_pdfs_and_official_responses_only,
    r04_reopen_and_delete_upstream_are_reflected,
    r05_copies_are_read_only_and_links_and_answers_stay_downstream,
    r06_after_a_disconnection_copies_stay_marked_disconnected,
    n05_initial_rfi_sync_complete_reaches_the_downstream_rfis_list,
    rfi_permissions_and_bad_input_are_named,
    an_undone_rfi_connection_leaves_no_copies,
    repeated_and_reordered_rfi_events_leave_the_same_state,
    linked_drawings_and_private_files_follow_the_readers_access,
    private_rfi_and_linked_drawing_rows_of_the_authorization_matrix,
    concurrent_rfi_creates_in_one_project_all_succeed_with_distinct_numbers,
);

/// Issue 17: people filing RFIs at the same moment all succeed (on Postgres they were
/// answered ABORTED); each gets its own number.
async fn concurrent_rfi_creates_in_one_project_all_succeed_with_distinct_numbers(backend: Backend) {
    let w = world(backend).await;
    let creates = (0..8).map(|i| {
        let mut client = w.rfis(&w.gc_admin);
        let r = request(&w.gc_project, &format!("Concurrent {i}"));
        async move { client.create_rfi(r).await }
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

/// A one-page PDF whose page's `/Parent` chain loops (object 4 is its own parent), with a
/// correct cross-reference table: what a hostile tenant uploads as a drawing.
fn cyclic_parent_pdf() -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 4 0 R /MediaBox [0 0 10 10] >>",
        "<< /Type /Pages /Parent 4 0 R /Kids [3 0 R] /Count 1 >>",
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

impl World {
    /// A new GC employee, member of the upstream project with `p`.
    async fn gc_user(&self, name: &str, p: pb::ToolPermissions) -> String {
        let mut op = self.app.directory_as_operator();
        let id = user(&mut op, &self.gc, name).await;
        member(&mut op, &self.gc_project, &id, p).await;
        id
    }

    /// A private RFI upstream whose only participant besides the GC admin is gc_member (its
    /// assignee), with an attachment on its question.
    async fn private_rfi_with_attachment(&self) -> (rpb::Rfi, rpb::File) {
        let attachment = self
            .upload(
                &self.gc_admin,
                &self.gc_project,
                "private.txt",
                b"private".to_vec(),
            )
            .await
            .unwrap();
        let mut r = request(&self.gc_project, "Private");
        r.private = true;
        r.assignee_ids = vec![self.gc_member.clone()];
        r.question_file_ids = vec![attachment.id.clone()];
        (self.create(&self.gc_admin, r).await, attachment)
    }

    /// A drawing revision upstream with `pdf` as its file, published or not.
    async fn revision(&self, number: &str, pdf: Vec<u8>, publish: bool) -> dpb::DrawingRevision {
        let drawings = self.app.drawings(&self.app.user_token(&self.gc_admin));
        let area = drawings
            .clone()
            .create_drawing_area(dpb::CreateDrawingAreaRequest {
                project_id: self.gc_project.clone(),
                name: format!("Area {number}"),
                description: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let set = drawings
            .clone()
            .create_drawing_set(dpb::CreateDrawingSetRequest {
                project_id: self.gc_project.clone(),
                name: format!("Set {number}"),
                date: "2026-03-01".into(),
            })
            .await
            .unwrap()
            .into_inner();
        use dpb::upload_file_request::{Header, Part};
        let file = drawings
            .clone()
            .upload_file(tokio_stream::iter(vec![
                dpb::UploadFileRequest {
                    part: Some(Part::Header(Header {
                        project_id: self.gc_project.clone(),
                        filename: format!("{number}.pdf"),
                        content_type: "application/pdf".into(),
                    })),
                },
                dpb::UploadFileRequest {
                    part: Some(Part::Chunk(pdf)),
                },
            ]))
            .await
            .unwrap()
            .into_inner();
        let revision = drawings
            .clone()
            .create_drawing_revision(dpb::CreateDrawingRevisionRequest {
                project_id: self.gc_project.clone(),
                area_id: area.id,
                set_id: set.id,
                number: number.into(),
                title: number.into(),
                discipline_name: "Electrical".into(),
                discipline_position: 1,
                revision_number: "0".into(),
                revision_status: "Issued".into(),
                drawing_date: "2026-02-14".into(),
                received_date: "2026-02-20".into(),
                file_id: file.id,
                custom_fields: Default::default(),
            })
            .await
            .unwrap()
            .into_inner();
        if publish {
            drawings
                .clone()
                .publish_drawing_revisions(dpb::PublishDrawingRevisionsRequest {
                    project_id: self.gc_project.clone(),
                    revision_ids: vec![revision.id.clone()],
                })
                .await
                .unwrap();
        }
        revision
    }
}

/// Issue 16: what an RFI shows of Drawings is what its author may see there; a private RFI's
/// files stay with its participants; a hostile drawing PDF cannot stop the service.
async fn linked_drawings_and_private_files_follow_the_readers_access(backend: Backend) {
    let w = world(backend).await;
    // RFIs STANDARD but no Drawings level at all.
    let no_drawings = w
        .gc_user("nadia", perms(L::None, L::None, L::Standard))
        .await;
    let published = w
        .revision("E-101", drawing_pdf("Panel schedule E-101"), true)
        .await;
    let unpublished = w
        .revision("E-102", drawing_pdf("Draft riser E-102"), false)
        .await;
    let link = |revision: &dpb::DrawingRevision| {
        let mut r = request(&w.gc_project, "Linked sheet");
        r.drawing_revision_ids = vec![revision.id.clone()];
        r
    };

    // No Drawings access: even a published sheet cannot be linked (and so never rendered).
    refused(
        w.rfis(&no_drawings).create_rfi(link(&published)).await,
        "LINKED_DRAWING_NOT_FOUND",
    );
    // Drawings READ_ONLY: published yes, unpublished no; nor by a later update.
    refused(
        w.rfis(&w.gc_member).create_rfi(link(&unpublished)).await,
        "LINKED_DRAWING_NOT_FOUND",
    );
    let mine = w.create(&w.gc_member, link(&published)).await;
    assert_eq!(mine.drawing_revision_ids, vec![published.id.clone()]);
    let mut patch = mine.clone();
    patch.drawing_revision_ids = vec![published.id.clone(), unpublished.id.clone()];
    refused(
        w.rfis(&w.gc_member)
            .update_rfi(rpb::UpdateRfiRequest {
                rfi: Some(patch),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["drawing_revision_ids".into()],
                }),
            })
            .await,
        "LINKED_DRAWING_NOT_FOUND",
    );

    // A private RFI's attachment downloads for its participants only.
    let (_, attachment) = w.private_rfi_with_attachment().await;
    let (_, bytes) = w.download(&w.gc_member, &attachment.id).await;
    assert_eq!(bytes, b"private");
    let outsider = w
        .rfis(&no_drawings)
        .download_file(rpb::DownloadFileRequest {
            id: attachment.id.clone(),
        })
        .await;
    assert_eq!(
        outsider.err().map(|s| s.code()),
        Some(Code::NotFound),
        "a member who is not a participant of the private RFI"
    );

    // A drawing whose page tree loops, linked and closed: the close answers at once, the
    // sheet is listed as unreadable, and the service keeps serving.
    let cyclic = w.revision("E-666", cyclic_parent_pdf(), true).await;
    let rfi = w.create(&w.gc_admin, link(&cyclic)).await;
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(20), w.close(&rfi))
        .await
        .expect("the close answers within seconds");
    assert!(started.elapsed() < Duration::from_secs(20));
    let (_, linked) = w
        .download(&w.gc_admin, &closed.linked_drawings_file_id)
        .await;
    let text = pdf::text_of(&linked).unwrap();
    assert!(text.contains("not a readable PDF"), "{text}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(w.app.channel());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "connectability.rfis.v1.RfiService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    w.app.stop().await;
}

/// Issue 8 moved the sync machinery of drawings-sync into libs/sync with the promise that
/// drawings keep their behaviour exactly: the drawings suite is the one from before the
/// move (commit f7653d0), byte for byte. Change it only together with a deliberate change
/// of drawings behaviour, and record the new digest here with the reason.
///
/// Changed once, for issue 16: the replay test's hand-built sync core gained the
/// connection-manager client it confirms connection events with (one added line; no
/// drawings behaviour the suite checks changed). Changed again for issue 17: that core is
/// built with `connectability_sync::Engine::new`, and the test migration set names no
/// library migrations (construction only; no behaviour changed).
#[test]
fn drawings_suite_is_unchanged_by_the_move_to_libs_sync() {
    use sha2::{Digest, Sha256};
    let suite = include_bytes!("drawings.rs");
    assert_eq!(
        format!("{:x}", Sha256::digest(suite)),
        "b7758d8951259d90849133d95cc4bb14b4be0bdb9f26c9701a006e54bc6f054f"
    );
}

/// The authorization matrix's rows for a private RFI and for linked drawings (issue 16),
/// kept in docs/authz-matrix-private-rfi.md (`UPDATE_AUTHZ_DOC=1` rewrites it): every RFI
/// call on a private RFI by a member of the same project with STANDARD on RFIs who is not
/// one of its participants, beside a participant's answer; and linking drawings by members
/// with different Drawings levels.
async fn private_rfi_and_linked_drawing_rows_of_the_authorization_matrix(backend: Backend) {
    let w = world(backend).await;
    // Same project, RFIs STANDARD, Drawings READ_ONLY, named nowhere on the private RFI.
    let outsider = w
        .gc_user("olga", perms(L::None, L::ReadOnly, L::Standard))
        .await;
    let no_drawings = w
        .gc_user("nadia", perms(L::None, L::None, L::Standard))
        .await;
    let (private, attachment) = w.private_rfi_with_attachment().await;

    type Call = fn(Rfis, String, String) -> futures::future::BoxFuture<'static, Result<(), Status>>;
    let rows: Vec<(&str, Call)> = vec![
        ("RfiService/GetRfi", |mut c, id, _| {
            Box::pin(async move { c.get_rfi(rpb::GetRfiRequest { id }).await.map(|_| ()) })
        }),
        ("RfiService/ListRfis (lists it)", |mut c, id, project| {
            Box::pin(async move {
                let listed = c
                    .list_rfis(rpb::ListRfisRequest {
                        project_id: project,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .rfis;
                if listed.iter().any(|r| r.id == id) {
                    Ok(())
                } else {
                    Err(Status::not_found("not listed"))
                }
            })
        }),
        ("RfiService/UpdateRfi", |mut c, id, _| {
            Box::pin(async move {
                c.update_rfi(rpb::UpdateRfiRequest {
                    rfi: Some(rpb::Rfi {
                        id,
                        subject: "Renamed".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["subject".into()],
                    }),
                })
                .await
                .map(|_| ())
            })
        }),
        ("RfiService/AddRfiResponse", |mut c, id, _| {
            Box::pin(async move {
                c.add_rfi_response(rpb::AddRfiResponseRequest {
                    rfi_id: id,
                    body: "Seen".into(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
            })
        }),
        ("RfiService/CloseRfi", |mut c, id, _| {
            Box::pin(async move { c.close_rfi(rpb::CloseRfiRequest { id }).await.map(|_| ()) })
        }),
        ("RfiService/DeleteRfi", |mut c, id, _| {
            Box::pin(async move { c.delete_rfi(rpb::DeleteRfiRequest { id }).await.map(|_| ()) })
        }),
    ];
    let code = |r: &Result<(), Status>| match r {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    };
    let mut table = vec![
        "| RPC on a private RFI | same project, not a participant (RFIs STANDARD) | participant (assignee) |".to_string(),
        "|---|---|---|".to_string(),
    ];
    let mut failures = Vec::new();
    for (rpc, call) in &rows {
        let got = call(w.rfis(&outsider), private.id.clone(), w.gc_project.clone()).await;
        // Reads first for the participant; the changes are tried by the outsider only.
        let participant =
            if rpc.starts_with("RfiService/GetRfi") || rpc.starts_with("RfiService/ListRfis") {
                Some(code(
                    &call(
                        w.rfis(&w.gc_member),
                        private.id.clone(),
                        w.gc_project.clone(),
                    )
                    .await,
                ))
            } else {
                None
            };
        if code(&got) != Code::NotFound {
            failures.push(format!("{rpc} as a non-participant: {:?}", got));
        }
        if participant.is_some_and(|c| c != Code::Ok) {
            failures.push(format!("{rpc} as the participant: {participant:?}"));
        }
        table.push(format!(
            "| `{rpc}` | {:?} | {} |",
            code(&got),
            participant.map_or("(not tried)".to_string(), |c| format!("{c:?}"))
        ));
    }
    let download = |who: String| {
        let mut c = w.rfis(&who);
        let id = attachment.id.clone();
        async move {
            c.download_file(rpb::DownloadFileRequest { id })
                .await
                .map(|_| ())
        }
    };
    let (out, inn) = (
        download(outsider.clone()).await,
        download(w.gc_member.clone()).await,
    );
    if code(&out) != Code::NotFound || code(&inn) != Code::Ok {
        failures.push(format!(
            "DownloadFile of the attachment: outsider {out:?}, participant {inn:?}"
        ));
    }
    table.push(format!(
        "| `RfiService/DownloadFile` (its attachment) | {:?} | {:?} |",
        code(&out),
        code(&inn)
    ));

    // Linked drawings: what the linking member may see in Drawings decides.
    let published = w.revision("E-201", drawing_pdf("E-201"), true).await;
    let unpublished = w.revision("E-202", drawing_pdf("E-202"), false).await;
    let link = |by: String, rev: String| {
        let mut r = request(&w.gc_project, "Linked");
        r.drawing_revision_ids = vec![rev];
        let mut c = w.rfis(&by);
        async move { c.create_rfi(r).await.map(|_| ()) }
    };
    table.push(String::new());
    table.push(
        "| `RfiService/CreateRfi` linking a drawing revision, by | published | unpublished |"
            .into(),
    );
    table.push("|---|---|---|".into());
    for (who, id, want) in [
        (
            "a member without Drawings access",
            no_drawings.clone(),
            [Code::FailedPrecondition, Code::FailedPrecondition],
        ),
        (
            "a Drawings READ_ONLY member",
            outsider.clone(),
            [Code::Ok, Code::FailedPrecondition],
        ),
        ("a Drawings admin", w.gc_admin.clone(), [Code::Ok, Code::Ok]),
    ] {
        let got = [
            code(&link(id.clone(), published.id.clone()).await),
            code(&link(id.clone(), unpublished.id.clone()).await),
        ];
        if got != want {
            failures.push(format!("linking as {who}: {got:?}, expected {want:?}"));
        }
        table.push(format!("| {who} | {:?} | {:?} |", got[0], got[1]));
    }
    let table = table.join("\n");
    println!("{table}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let text = format!(
        "# Authorization matrix: private RFIs and linked drawings\n\nThe rows docs/authz-matrix.md cannot show with its one public RFI (issue 16). Written by `tests/tests/suite/rfis.rs` (`private_rfi_and_linked_drawing_rows_of_the_authorization_matrix`), which checks every cell on both backends; `UPDATE_AUTHZ_DOC=1` rewrites this file. A change tried by the participant would change the RFI, so only reads are tried as the participant. FAILED_PRECONDITION is `LINKED_DRAWING_NOT_FOUND`; for ListRfis, NotFound means the list leaves the RFI out.\n\n{table}\n"
    );
    connectability_tests::keep_authz_doc("authz-matrix-private-rfi.md", &text);
    w.app.stop().await;
}
