//! `make bench`: how fast a drawings backfill copies, end to end through gRPC.
//!
//! An upstream project gets N published drawings (one publish of N sheets); a downstream
//! project connects; the clock runs until the sync reports IN_SYNC with every revision
//! copied. Copies are written in batches (one transaction per 200 upstream drawings).

use std::time::{Duration, Instant};

use connectability_proto::{
    connections::v1::{self as cpb, Feature},
    directory::v1::{self as pb, PermissionLevel as L},
    drawings::v1::{self as dpb, upload_file_request::Part},
};
use connectability_testkit::{Backend, Service, TestApp};

const SHEETS: usize = 1000;

fn admin() -> pb::ToolPermissions {
    pb::ToolPermissions {
        connection_manager: L::Admin as i32,
        drawings: L::Admin as i32,
        rfis: L::Admin as i32,
        submittals: L::Admin as i32,
    }
}

async fn run(backend: Backend) -> anyhow::Result<()> {
    let name = backend.name();
    let app = TestApp::spawn(
        backend,
        &[
            Service::Directory,
            Service::DrawingsSync,
            Service::ConnectionManager,
        ],
    )
    .await;
    let mut op = app.directory_as_operator();
    let company = |name: &str| pb::CreateCompanyRequest {
        name: name.into(),
        storage_location: "us-east".into(),
        ..Default::default()
    };
    let gc = op.create_company(company("GC")).await?.into_inner().id;
    let sub = op.create_company(company("Sub")).await?.into_inner().id;
    let user = op
        .create_user(pb::CreateUserRequest {
            company_id: sub.clone(),
            display_name: "Raj".into(),
            email: "raj@sub.example".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .id;
    let up = op
        .create_project(pb::CreateProjectRequest {
            company_id: gc,
            name: "Tower".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .id;
    let down = op
        .create_project(pb::CreateProjectRequest {
            company_id: sub,
            name: "Tower E".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .id;
    for p in [&up, &down] {
        op.add_project_member(pb::AddProjectMemberRequest {
            project_id: p.clone(),
            user_id: user.clone(),
            permissions: Some(admin()),
            ..Default::default()
        })
        .await?;
    }
    let mut d = app.drawings(&app.user_token(&user));
    let area = d
        .create_drawing_area(dpb::CreateDrawingAreaRequest {
            project_id: up.clone(),
            name: "L1".into(),
            description: String::new(),
        })
        .await?
        .into_inner();
    let set = d
        .create_drawing_set(dpb::CreateDrawingSetRequest {
            project_id: up.clone(),
            name: "IFC".into(),
            date: "2026-01-01".into(),
        })
        .await?
        .into_inner();
    let header = dpb::UploadFileRequest {
        part: Some(Part::Header(dpb::upload_file_request::Header {
            project_id: up.clone(),
            filename: "sheet.pdf".into(),
            content_type: "application/pdf".into(),
        })),
    };
    let chunk = dpb::UploadFileRequest {
        part: Some(Part::Chunk(
            [b"%PDF-1.4\n".as_slice(), &[b'x'; 100_000]].concat(),
        )),
    };
    let file = d
        .upload_file(tokio_stream::iter(vec![header, chunk]))
        .await?
        .into_inner();
    let mut revisions = Vec::with_capacity(SHEETS);
    for i in 0..SHEETS {
        let rev = d
            .create_drawing_revision(dpb::CreateDrawingRevisionRequest {
                project_id: up.clone(),
                area_id: area.id.clone(),
                set_id: set.id.clone(),
                number: format!("A-{i:04}"),
                title: format!("Sheet {i}"),
                revision_number: "0".into(),
                file_id: file.id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        revisions.push(rev.id);
    }
    d.publish_drawing_revisions(dpb::PublishDrawingRevisionsRequest {
        project_id: up.clone(),
        revision_ids: revisions,
    })
    .await?;

    let start = Instant::now();
    let connection = app
        .connections(&app.user_token(&user))
        .request_connection(cpb::RequestConnectionRequest {
            downstream_project_id: down.clone(),
            upstream_project_id: up.clone(),
            features: vec![Feature::Drawings as i32],
            request_id: String::new(),
        })
        .await?
        .into_inner();
    loop {
        if let Ok(s) = d
            .get_sync_status(dpb::GetSyncStatusRequest {
                connection_id: connection.id.clone(),
            })
            .await
        {
            let s = s.into_inner();
            if s.state() == dpb::SyncState::InSync {
                anyhow::ensure!(
                    s.items_copied == SHEETS as i64,
                    "copied {} of {SHEETS}",
                    s.items_copied
                );
                break;
            }
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "backfill did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    println!(
        "{name:>14}: backfill of {SHEETS} published drawings (100 KB PDF each) in {:>6.3}s ({:>6.0} revisions/s, files copied under the downstream prefix)",
        took.as_secs_f64(),
        SHEETS as f64 / took.as_secs_f64()
    );
    app.stop().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    run(Backend::Embedded).await?;
    match Backend::production().await {
        Some(b) => run(b).await?,
        None => println!("postgres+nats: unreachable, not measured"),
    }
    Ok(())
}
