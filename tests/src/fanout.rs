//! One upstream project with many connected downstream projects, built through gRPC as a
//! user would: what the fan-out bench measures and the sync engine's suite checks.

use std::time::{Duration, Instant};

use connectability_auth::{BearerToken, Issuer};
use connectability_proto::{
    connections::v1::connection_service_client::ConnectionServiceClient,
    directory::v1::directory_service_client::DirectoryServiceClient,
    drawings::v1::drawing_service_client::DrawingServiceClient,
};
use connectability_proto::{
    connections::v1::{self as cpb, Feature},
    directory::v1::{self as pb, PermissionLevel as L},
    drawings::v1::{self as dpb, upload_file_request::Part},
};
use connectability_store::Db;
use connectability_testkit::{AuthedChannel, Backend, Options, Service, TestApp};
use futures::StreamExt;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

/// Where the services a world is built through answer, and who signs its tokens: one
/// in-process [`TestApp`], or services running as processes of their own.
pub trait Services {
    fn issuer(&self) -> &Issuer;
    fn directory_channel(&self) -> Channel;
    fn drawings_channel(&self) -> Channel;
    fn connections_channel(&self) -> Channel;
}

impl Services for TestApp {
    fn issuer(&self) -> &Issuer {
        &self.issuer
    }
    fn directory_channel(&self) -> Channel {
        self.channel()
    }
    fn drawings_channel(&self) -> Channel {
        self.channel()
    }
    fn connections_channel(&self) -> Channel {
        self.channel()
    }
}

fn authed(channel: Channel, token: &str) -> AuthedChannel {
    InterceptedService::new(channel, BearerToken::new(token))
}

/// Admin on every tool.
pub fn admin() -> pb::ToolPermissions {
    pb::ToolPermissions {
        connection_manager: L::Admin as i32,
        drawings: L::Admin as i32,
        rfis: L::Admin as i32,
        submittals: L::Admin as i32,
    }
}

/// A GC's upstream project (area, set and one uploaded PDF ready for sheets) and a
/// subcontractor's downstream projects, each connected for Drawings and IN_SYNC.
pub struct Fanout {
    pub app: TestApp,
    /// Its ids (`world.up`, `world.raj`, … read through to them).
    pub world: World,
    next: usize,
}

impl std::ops::Deref for Fanout {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl std::ops::DerefMut for Fanout {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

impl Fanout {
    /// Builds the world with `downstreams` connections and a `pdf_bytes` upload.
    pub async fn new(
        backend: Backend,
        downstreams: usize,
        pdf_bytes: usize,
    ) -> anyhow::Result<Self> {
        Self::new_with(backend, downstreams, pdf_bytes, Options::default()).await
    }

    /// [`Fanout::new`] with other service options (limits).
    pub async fn new_with(
        backend: Backend,
        downstreams: usize,
        pdf_bytes: usize,
        options: Options,
    ) -> anyhow::Result<Self> {
        let app = TestApp::spawn_with(
            backend,
            &[
                Service::Directory,
                Service::DrawingsSync,
                Service::ConnectionManager,
            ],
            options,
        )
        .await;
        Self::build(app, downstreams, pdf_bytes).await
    }

    /// The world in an app already running (it needs at least the directory, drawings-sync
    /// and connection-manager).
    pub async fn build(app: TestApp, downstreams: usize, pdf_bytes: usize) -> anyhow::Result<Self> {
        let db = app.db(Service::DrawingsSync).clone();
        let world = World::build(&app, &db, downstreams, pdf_bytes).await?;
        Ok(Fanout {
            app,
            world,
            next: 0,
        })
    }

    /// Creates `n` unpublished first revisions of new sheets (8 calls at a time); their ids.
    pub async fn revisions(&mut self, n: usize) -> anyhow::Result<Vec<String>> {
        let client = self.app.drawings(&self.app.user_token(&self.gina));
        let first = self.next;
        self.next += n;
        let calls = (first..first + n).map(|i| {
            let mut client = client.clone();
            let r = self.revision_request(i, "0");
            async move {
                client
                    .create_drawing_revision(r)
                    .await
                    .map(|r| r.into_inner().id)
            }
        });
        let ids: Vec<Result<String, tonic::Status>> =
            futures::stream::iter(calls).buffered(8).collect().await;
        Ok(ids.into_iter().collect::<Result<_, _>>()?)
    }

    /// Publishes `ids` in one call; returns when the call returns.
    pub async fn publish(&self, ids: Vec<String>) -> anyhow::Result<()> {
        self.app
            .drawings(&self.app.user_token(&self.gina))
            .publish_drawing_revisions(dpb::PublishDrawingRevisionsRequest {
                project_id: self.up.clone(),
                revision_ids: ids,
            })
            .await?;
        Ok(())
    }

    /// drawings-sync's database.
    pub fn db(&self) -> Db {
        self.app.db(Service::DrawingsSync).clone()
    }
}

fn revision_request(
    project: &str,
    area: &str,
    set: &str,
    file: &str,
    sheet: usize,
    revision_number: &str,
) -> dpb::CreateDrawingRevisionRequest {
    dpb::CreateDrawingRevisionRequest {
        project_id: project.into(),
        area_id: area.into(),
        set_id: set.into(),
        number: format!("A-{sheet:05}"),
        title: format!("Sheet {sheet}"),
        discipline_name: "Architectural".into(),
        discipline_position: 1,
        revision_number: revision_number.into(),
        revision_status: "Issued".into(),
        drawing_date: "2026-02-14".into(),
        received_date: "2026-02-20".into(),
        file_id: file.into(),
        custom_fields: Default::default(),
    }
}

/// The ids of the world [`Fanout`] runs in, built through gRPC as a user would.
pub struct World {
    /// The subcontractor's company.
    pub sub: String,
    pub up: String,
    pub gina: String,
    pub raj: String,
    pub area: String,
    pub set: String,
    pub file: String,
    /// (downstream project, connection) pairs.
    pub downstreams: Vec<(String, String)>,
}

impl World {
    /// A new unpublished revision `revision_number` of sheet `sheet` (`A-<sheet>`).
    pub fn revision_request(
        &self,
        sheet: usize,
        revision_number: &str,
    ) -> dpb::CreateDrawingRevisionRequest {
        revision_request(
            &self.up,
            &self.area,
            &self.set,
            &self.file,
            sheet,
            revision_number,
        )
    }

    /// Builds it through `services` (the directory, drawings-sync and connection-manager);
    /// `drawings_db` is drawings-sync's database, read to wait until every connection is in
    /// sync.
    pub async fn build(
        services: &impl Services,
        drawings_db: &Db,
        downstreams: usize,
        pdf_bytes: usize,
    ) -> anyhow::Result<Self> {
        let issuer = services.issuer();
        let mut op =
            DirectoryServiceClient::new(authed(services.directory_channel(), &issuer.operator()));
        let company = |name: &str| pb::CreateCompanyRequest {
            name: name.into(),
            storage_location: "us-east".into(),
            ..Default::default()
        };
        let gc = op.create_company(company("GC")).await?.into_inner().id;
        let sub = op.create_company(company("Sub")).await?.into_inner().id;
        let user = |company: &str, name: &str| pb::CreateUserRequest {
            company_id: company.into(),
            display_name: name.into(),
            email: format!("{name}@{company}.example"),
            ..Default::default()
        };
        let gina = op.create_user(user(&gc, "gina")).await?.into_inner().id;
        let raj = op.create_user(user(&sub, "raj")).await?.into_inner().id;
        let project = |company: &str, name: String| pb::CreateProjectRequest {
            company_id: company.into(),
            name,
            ..Default::default()
        };
        let up = op
            .create_project(project(&gc, "Tower".into()))
            .await?
            .into_inner()
            .id;
        let member = |project: &str, user: &str| pb::AddProjectMemberRequest {
            project_id: project.into(),
            user_id: user.into(),
            permissions: Some(admin()),
            ..Default::default()
        };
        op.add_project_member(member(&up, &gina)).await?;
        op.add_project_member(member(&up, &raj)).await?;
        let drawings =
            DrawingServiceClient::new(authed(services.drawings_channel(), &issuer.user(&gina)));
        let area = drawings
            .clone()
            .create_drawing_area(dpb::CreateDrawingAreaRequest {
                project_id: up.clone(),
                name: "Level 1".into(),
                description: String::new(),
            })
            .await?
            .into_inner()
            .id;
        let set = drawings
            .clone()
            .create_drawing_set(dpb::CreateDrawingSetRequest {
                project_id: up.clone(),
                name: "IFC".into(),
                date: "2026-03-01".into(),
            })
            .await?
            .into_inner()
            .id;
        let mut pdf = b"%PDF-1.4\n".to_vec();
        pdf.resize(pdf_bytes.max(pdf.len()), b'x');
        let file = drawings
            .clone()
            .upload_file(tokio_stream::iter(vec![
                dpb::UploadFileRequest {
                    part: Some(Part::Header(dpb::upload_file_request::Header {
                        project_id: up.clone(),
                        filename: "sheet.pdf".into(),
                        content_type: "application/pdf".into(),
                    })),
                },
                dpb::UploadFileRequest {
                    part: Some(Part::Chunk(pdf)),
                },
            ]))
            .await?
            .into_inner()
            .id;
        let mut world = World {
            sub,
            up,
            gina,
            raj,
            area,
            set,
            file,
            downstreams: Vec::with_capacity(downstreams),
        };
        for i in 0..downstreams {
            let pair = world
                .connect(services, &format!("Tower - trade {i}"))
                .await?;
            world.downstreams.push(pair);
        }
        wait_until(
            drawings_db,
            "SELECT COUNT(*) FROM sync_connections WHERE state = 2",
            downstreams as i64,
        )
        .await?;
        Ok(world)
    }

    /// A new project `name` of the subcontractor, with raj as its admin, connected for
    /// Drawings to the upstream (its backfill starts): (project, connection).
    pub async fn connect(
        &self,
        services: &impl Services,
        name: &str,
    ) -> anyhow::Result<(String, String)> {
        let issuer = services.issuer();
        let mut op =
            DirectoryServiceClient::new(authed(services.directory_channel(), &issuer.operator()));
        let down = op
            .create_project(pb::CreateProjectRequest {
                company_id: self.sub.clone(),
                name: name.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .id;
        op.add_project_member(pb::AddProjectMemberRequest {
            project_id: down.clone(),
            user_id: self.raj.clone(),
            permissions: Some(admin()),
            ..Default::default()
        })
        .await?;
        let connection = ConnectionServiceClient::new(authed(
            services.connections_channel(),
            &issuer.user(&self.raj),
        ))
        .request_connection(cpb::RequestConnectionRequest {
            downstream_project_id: down.clone(),
            upstream_project_id: self.up.clone(),
            features: vec![Feature::Drawings as i32],
            request_id: String::new(),
        })
        .await?
        .into_inner()
        .id;
        Ok((down, connection))
    }
}

/// Polls until the copy queue (`sync_work`) of `db` is empty (one minute at most).
pub async fn wait_drained(db: &Db) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sync_work")
            .fetch_one(db.pool())
            .await?;
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the copy queue still holds {left} items"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `sql` (one COUNT) every 2 ms until it reaches `want` (10 minutes at most).
pub async fn wait_until(db: &Db, sql: &'static str, want: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(db.pool())
            .await?;
        if n >= want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "gave up waiting for {sql} to reach {want}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
