//! Hostile input (issue 11): property tests of every shared request parser and validator
//! (random unicode, NUL bytes, 100,000-character strings, malformed ids, dates, page tokens)
//! never panic and refuse only with INVALID_ARGUMENT naming the field; and random bytes as
//! the body of every RPC of every service get an answer while the server stays healthy.

use std::time::Duration;

use connectability_platform::{
    input::{
        Id, parse_content_type, parse_date, parse_ids, parse_name, parse_optional_id,
        parse_request_id, parse_text,
    },
    paging::PageRequest,
};
use connectability_testkit::{Backend, Service, TestApp};
use connectability_tests::{
    chaos::Rng,
    grpc::{call, every_rpc},
};
use proptest::prelude::*;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Ok, or INVALID_ARGUMENT whose BadRequest names `field` (or one of its entries, `field[i]`).
fn refuses_naming<T>(field: &str, result: &Result<T, Status>) -> Result<(), TestCaseError> {
    if let Err(s) = result {
        prop_assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());
        let bad = s.get_details_bad_request();
        prop_assert!(bad.is_some(), "no BadRequest details: {}", s.message());
        let entry = format!("{field}[");
        prop_assert!(
            bad.unwrap()
                .field_violations
                .iter()
                .any(|v| v.field == field || v.field.starts_with(&entry)),
            "does not name {field}: {}",
            s.message()
        );
    }
    Ok(())
}

/// What a hostile client sends as a string.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z]{0,4}_?[a-z0-9_]{0,70}",
        "[ -~]{0,10}\u{0}[ -~]{0,10}",
        "[\u{0}-\u{1f}\u{7f}-\u{9f}]{1,8}",
        (any::<char>(), 0usize..=100_000).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        "-?[0-9]{0,6}-[0-9]{0,3}-[0-9]{0,3}",
        "[A-Za-z0-9+/=_-]{0,64}",
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn ids_are_parsed_or_refused_naming_the_field(raw in hostile()) {
        let r = Id::parse("prj", "project_id", &raw);
        refuses_naming("project_id", &r)?;
        if let Ok(id) = r {
            prop_assert!(id.as_str().starts_with("prj_") && id.as_str().len() <= 68);
        }
        refuses_naming("area_id", &parse_optional_id("area", "area_id", &raw))?;
    }

    #[test]
    fn id_lists_are_parsed_or_refused_naming_the_entry(raw in prop::collection::vec(hostile(), 0..20)) {
        let r = parse_ids("rev", "revision_ids", &raw, 10);
        refuses_naming("revision_ids", &r)?;
        if let Ok(ids) = r {
            prop_assert!(ids.len() <= raw.len() && ids.len() <= 10);
        }
    }

    #[test]
    fn names_texts_and_request_ids_are_parsed_or_refused_naming_the_field(raw in hostile()) {
        let name = parse_name("name", &raw);
        refuses_naming("name", &name)?;
        if let Ok(n) = name {
            prop_assert!(!n.is_empty() && n.chars().count() <= 200 && !n.chars().any(char::is_control));
        }
        let text = parse_text("reason", &raw, 2000);
        refuses_naming("reason", &text)?;
        if let Ok(t) = text {
            prop_assert!(t.chars().count() <= 2000);
        }
        refuses_naming("request_id", &parse_request_id(&raw))?;
        refuses_naming("content_type", &parse_content_type("content_type", &raw))?;
    }

    #[test]
    fn dates_are_parsed_or_refused_naming_the_field(raw in hostile(), optional in any::<bool>()) {
        let r = parse_date("drawing_date", &raw, optional);
        refuses_naming("drawing_date", &r)?;
        if let Ok(d) = r {
            prop_assert!(d.is_empty() || d.len() == 10);
        }
    }

    #[test]
    fn page_sizes_and_tokens_are_parsed_or_refused_naming_the_field(size in any::<i32>(), token in hostile()) {
        let r = PageRequest::parse(size, &token);
        if let Err(s) = &r {
            let field = if size < 0 { "page_size" } else { "page_token" };
            refuses_naming(field, &r)?;
            prop_assert_eq!(s.code(), Code::InvalidArgument);
        } else {
            let page = r.unwrap();
            prop_assert!((1..=1000).contains(&page.size));
        }
    }

    #[test]
    fn service_parsers_are_parsed_or_refused_naming_the_field(
        raw in hostile(),
        features in prop::collection::vec(any::<i32>(), 0..8),
    ) {
        refuses_naming("email", &directory::domain::parse_email(&raw))?;
        refuses_naming("storage_location", &directory::domain::parse_storage_location(&raw))?;
        refuses_naming("features", &connection_manager::domain::parse_features(&features))?;
    }
}

on_both_backends!(
    random_bodies_to_every_rpc_get_an_answer_and_the_server_stays_healthy,
    uploads_that_go_wrong_get_a_clear_error_and_leave_no_blob_or_row,
    hostile_field_masks_are_refused_naming_update_mask,
);

async fn random_bodies_to_every_rpc_get_an_answer_and_the_server_stays_healthy(backend: Backend) {
    let app = TestApp::spawn(backend, Service::ALL).await;
    let rpcs = every_rpc();
    assert!(rpcs.len() > 60, "found only {} RPCs", rpcs.len());
    let mut rng = Rng::new(11);
    let token = format!("Bearer {}", app.operator_token());
    let mut answers = std::collections::BTreeMap::<String, u32>::new();
    for rpc in &rpcs {
        for len in [0usize, 1, 5, 40, 600] {
            let body: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let answer = tokio::time::timeout(
                Duration::from_secs(10),
                call(app.channel(), rpc, vec![body], Some(&token)),
            )
            .await
            .unwrap_or_else(|_| panic!("{} did not answer random bytes within 10 s", rpc.path));
            let code = answer.err().map(|s| s.code());
            assert_ne!(
                code,
                Some(Code::Unknown),
                "{}: a panic or an unmapped error",
                rpc.path
            );
            assert_ne!(
                code,
                Some(Code::Unavailable),
                "{}: the server went away",
                rpc.path
            );
            *answers
                .entry(format!("{:?}", code.unwrap_or(Code::Ok)))
                .or_default() += 1;
        }
    }
    eprintln!(
        "answers to random bodies over {} RPCs: {answers:?}",
        rpcs.len()
    );
    // Still healthy, and still doing real work.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    app.directory_as_operator()
        .list_companies(connectability_proto::directory::v1::ListCompaniesRequest::default())
        .await
        .unwrap();
    app.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Files under a folder (the blob store), recursively.
fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { files_under(&p) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A wrong content type, a file over the cap, a body that claims to be a PDF and is not, and
/// a stream that stops half-way: each is refused, and neither a blob nor a `files` row stays.
async fn uploads_that_go_wrong_get_a_clear_error_and_leave_no_blob_or_row(backend: Backend) {
    use connectability_proto::drawings::v1::{self as dpb, upload_file_request::Part};
    let options = connectability_testkit::Options {
        drawings: drawings_sync::Limits {
            max_upload_bytes: 64 * 1024,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut world = connectability_tests::fanout::Fanout::new_with(backend, 0, 1024, options)
        .await
        .unwrap();
    let db = world.db();
    let rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM files")
            .fetch_one(db.pool())
            .await
            .unwrap()
    };
    let blobs = world.app.env.dir.join("blobs");
    let (rows_before, blobs_before) = (rows().await, files_under(&blobs));
    let header = |content_type: &str| dpb::UploadFileRequest {
        part: Some(Part::Header(dpb::upload_file_request::Header {
            project_id: world.up.clone(),
            filename: "sheet.pdf".into(),
            content_type: content_type.into(),
        })),
    };
    let chunk = |bytes: Vec<u8>| dpb::UploadFileRequest {
        part: Some(Part::Chunk(bytes)),
    };
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.resize(40 * 1024, b'x');
    let cases: Vec<(&str, Vec<dpb::UploadFileRequest>, &str)> = vec![
        (
            "wrong content type",
            vec![header("image/png"), chunk(pdf.clone())],
            "header.content_type",
        ),
        (
            "over the cap",
            vec![
                header("application/pdf"),
                chunk(pdf.clone()),
                chunk(pdf.clone()),
            ],
            "chunk",
        ),
        (
            "not a PDF",
            vec![
                header("application/pdf"),
                chunk(b"GIF89a not a pdf at all".to_vec()),
            ],
            "chunk",
        ),
        ("chunk before header", vec![chunk(pdf.clone())], "header"),
        (
            "two headers",
            vec![header("application/pdf"), header("application/pdf")],
            "header",
        ),
    ];
    let mut client = world.app.drawings(&world.app.user_token(&world.gina));
    for (what, messages, field) in cases {
        let status = client
            .upload_file(tokio_stream::iter(messages))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        let bad = status
            .get_details_bad_request()
            .expect("BadRequest details");
        assert_eq!(bad.field_violations[0].field, field, "{what}");
    }
    assert_eq!(rows().await, rows_before, "a refused upload left a row");
    assert_eq!(
        files_under(&blobs),
        blobs_before,
        "a refused upload left a blob"
    );
    // Streams that stop half-way: the client goes away after the header and a chunk, at
    // different moments. Whether the server saw the end of the stream first is a race, so
    // the check is that every stored blob has its row and every row its blob.
    for wait_ms in [0u64, 5, 50, 300] {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(header("application/pdf")).await.unwrap();
        tx.send(chunk(pdf.clone())).await.unwrap();
        let mut half = client.clone();
        let call = tokio::spawn(async move {
            half.upload_file(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        call.abort();
        let _ = call.await;
        drop(tx);
    }
    // A good upload still works afterwards.
    client
        .upload_file(tokio_stream::iter(vec![
            header("application/pdf"),
            chunk(pdf),
        ]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let keys: std::collections::BTreeSet<String> =
        sqlx::query_scalar::<_, String>("SELECT object_key FROM files")
            .fetch_all(db.pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    let stored: std::collections::BTreeSet<String> = walk(&blobs)
        .into_iter()
        .map(|p| {
            p.strip_prefix(&blobs)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        stored, keys,
        "every blob has its row and every row its blob"
    );
    let _ = world.revisions(0).await;
    world.app.stop().await;
}

/// A hostile field-mask path: random unicode, NUL and control bytes, a 100,000-character
/// path, real field names with junk around them, dotted and empty paths.
fn hostile_path(rng: &mut Rng) -> String {
    let real = [
        "name",
        "title",
        "subject",
        "active",
        "number",
        "description",
        "id",
        "project_id",
    ];
    match rng.below(7) {
        0 => (0..rng.below(20))
            .filter_map(|_| char::from_u32(rng.below(0x11_0000) as u32))
            .collect(),
        1 => format!("{}\u{0}", real[rng.below(real.len() as u64) as usize]),
        2 => "x".repeat(100_000),
        3 => format!("{}.{}", real[rng.below(real.len() as u64) as usize], "sub"),
        4 => String::new(),
        5 => format!(" {} ", real[rng.below(real.len() as u64) as usize]),
        _ => real[rng.below(real.len() as u64) as usize].to_string(),
    }
}

/// Every Update RPC with a field mask gets hostile masks: each answer is OK (a real,
/// updatable field) or INVALID_ARGUMENT naming `update_mask`, never a panic.
async fn hostile_field_masks_are_refused_naming_update_mask(backend: Backend) {
    use connectability_proto::{
        directory::v1 as pb, drawings::v1 as dpb, rfis::v1 as rpb, submittals::v1 as spb,
    };
    let app = TestApp::spawn(
        backend,
        &[
            Service::Directory,
            Service::ConnectionManager,
            Service::DrawingsSync,
            Service::RfiSync,
            Service::SubmittalSync,
        ],
    )
    .await;
    let mut world = connectability_tests::fanout::Fanout::build(app, 0, 1024)
        .await
        .unwrap();
    let token = world.app.user_token(&world.gina);
    let revision = world.revisions(1).await.unwrap().remove(0);
    world.publish(vec![revision.clone()]).await.unwrap();
    let app = &world.app;
    let mut drawings = app.drawings(&token);
    let drawing = drawings
        .list_drawings(dpb::ListDrawingsRequest {
            project_id: world.up.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .drawings
        .remove(0)
        .id;
    let mut rfis = app.rfis(&token);
    let rfi = rfis
        .create_rfi(rpb::CreateRfiRequest {
            project_id: world.up.clone(),
            subject: "Beam".into(),
            question: "Lower it?".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let mut submittals = app.submittals(&token);
    let submittal = submittals
        .create_submittal(spb::CreateSubmittalRequest {
            project_id: world.up.clone(),
            title: "Switchgear".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let mut directory = app.directory_as_operator();
    let mut rng = Rng::new(158);
    let mut refused = 0;
    for _ in 0..30 {
        let paths: Vec<String> = (0..1 + rng.below(3))
            .map(|_| hostile_path(&mut rng))
            .collect();
        let mask = Some(prost_types::FieldMask {
            paths: paths.clone(),
        });
        let answers: Vec<(&str, Result<(), Status>)> = vec![
            (
                "UpdateProject",
                directory
                    .update_project(pb::UpdateProjectRequest {
                        project: Some(pb::Project {
                            id: world.up.clone(),
                            name: "Tower".into(),
                            active: true,
                            ..Default::default()
                        }),
                        update_mask: mask.clone(),
                    })
                    .await
                    .map(|_| ()),
            ),
            (
                "UpdateDrawing",
                drawings
                    .update_drawing(dpb::UpdateDrawingRequest {
                        drawing: Some(dpb::Drawing {
                            id: drawing.clone(),
                            title: "Sheet".into(),
                            number: "A-00000".into(),
                            ..Default::default()
                        }),
                        update_mask: mask.clone(),
                    })
                    .await
                    .map(|_| ()),
            ),
            (
                "UpdateRfi",
                rfis.update_rfi(rpb::UpdateRfiRequest {
                    rfi: Some(rpb::Rfi {
                        id: rfi.clone(),
                        subject: "Beam".into(),
                        question: "Lower it?".into(),
                        ..Default::default()
                    }),
                    update_mask: mask.clone(),
                })
                .await
                .map(|_| ()),
            ),
            (
                "UpdateSubmittal",
                submittals
                    .update_submittal(spb::UpdateSubmittalRequest {
                        submittal: Some(spb::Submittal {
                            id: submittal.clone(),
                            title: "Switchgear".into(),
                            ..Default::default()
                        }),
                        update_mask: mask.clone(),
                    })
                    .await
                    .map(|_| ()),
            ),
        ];
        for (rpc, answer) in answers {
            if let Err(s) = answer {
                assert_eq!(s.code(), Code::InvalidArgument, "{rpc} {paths:?}: {s:?}");
                let bad = s.get_details_bad_request().expect("BadRequest details");
                assert!(
                    bad.field_violations
                        .iter()
                        .any(|v| v.field.starts_with("update_mask") || v.field.contains('.')),
                    "{rpc} {paths:?}: {s:?}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        refused > 30,
        "hostile masks were refused only {refused} times"
    );
    world.app.stop().await;
}
