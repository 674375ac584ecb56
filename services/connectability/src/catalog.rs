//! The composition root: every service once, in one list that `serve`, `migrate`, `dev`,
//! the test harness (`tests/harness`), the fault harness (`tests/src/chaos`) and
//! `make deploy-check` (through `connectability services`) all read.
//!
//! Each entry says what the service is called, what it owns (its migrations) and how it
//! starts inside a process that hosts several services on one gRPC server ([`InProcess`]:
//! `dev` and the tests). `serve <service>` starts one service from its own environment
//! (`<crate>::serve`), with the same parts.

use std::{sync::Arc, time::Duration};

use connectability_auth::Issuer;
use connectability_blobs::Blobs;
use connectability_events::EventBus;
use connectability_platform::{
    GrpcServer, clock::Clock, connections::ConnectionsGateway, directory::DirectoryGateway,
    drawings::DrawingsGateway,
};
use connectability_store::{Db, ServiceMigrations};
use futures::future::BoxFuture;
use tonic::transport::Channel;

/// What a process that hosts services together gives each of them.
pub struct InProcess {
    pub bus: Arc<dyn EventBus>,
    pub blobs: Blobs,
    /// The process's own gRPC server: services call each other through it.
    pub peers: Channel,
    /// Mints each service's identity (its token when it calls another service).
    pub issuer: Issuer,
    pub clock: Arc<dyn Clock>,
    /// How long directory answers are cached.
    pub directory_cache: Duration,
    pub drawings: drawings_sync::Limits,
    pub rfis: rfi_sync::Limits,
    pub submittals: submittal_sync::Limits,
    pub mail: notification::MailSettings,
    /// How often the tool services try a failing copy before parking it.
    pub work_retry: connectability_sync::WorkRetry,
}

impl InProcess {
    fn directory(&self, service: &str) -> DirectoryGateway {
        DirectoryGateway::new(
            self.peers.clone(),
            self.issuer.service(service),
            self.directory_cache,
        )
    }

    fn connections(&self, service: &str) -> ConnectionsGateway {
        ConnectionsGateway::new(self.peers.clone(), self.issuer.service(service))
    }

    fn drawings(&self, service: &str) -> DrawingsGateway {
        DrawingsGateway::new(self.peers.clone(), self.issuer.service(service))
    }

    /// What a tool service's engine and API run on, with `service`'s identity.
    fn foundation(&self, db: Db, service: &str) -> connectability_sync::Foundation {
        connectability_sync::Foundation {
            db,
            bus: self.bus.clone(),
            blobs: self.blobs.clone(),
            clock: self.clock.clone(),
            connections: self.connections(service),
            directory: self.directory(service),
            work_retry: self.work_retry,
        }
    }
}

/// A started service, ready to be mounted on the process's gRPC server.
pub trait Mount: Send {
    fn mount_on(self: Box<Self>, server: &mut GrpcServer, max_message_bytes: usize);
}

macro_rules! mountable {
    ($($t:ty),+) => {
        $(impl Mount for $t {
            fn mount_on(self: Box<Self>, server: &mut GrpcServer, max_message_bytes: usize) {
                (*self).mount(server, max_message_bytes)
            }
        })+
    };
}

mountable!(
    directory::Directory,
    connection_manager::ConnectionManager,
    drawings_sync::DrawingsSync,
    rfi_sync::RfiSync,
    submittal_sync::SubmittalSync,
    notification::Notification
);

type Started<'a> = BoxFuture<'a, anyhow::Result<Box<dyn Mount>>>;
type DemoLoad<'a> = BoxFuture<'a, anyhow::Result<bool>>;

/// One service of the system.
pub struct Service {
    /// Its name: `serve <name>`, `migrate <name>`, its identity, its database's name.
    pub name: &'static str,
    pub about: &'static str,
    pub migrations: fn() -> ServiceMigrations,
    /// Starts it on `db` (migrated) inside a process hosting several services.
    pub start: for<'a> fn(Db, &'a InProcess) -> Started<'a>,
    /// Loads its part of the demo data into `db` (false: already there).
    pub demo: for<'a> fn(&'a Db, &'a Blobs) -> DemoLoad<'a>,
}

/// Every service, in the order a process starts them.
pub const SERVICES: &[Service] = &[
    Service {
        name: directory::NAME,
        about: "Companies, projects, users, project directories.",
        migrations: directory::migrations,
        start: |db, p| {
            Box::pin(async move {
                Ok(Box::new(directory::Directory::new(db, p.bus.clone())) as Box<dyn Mount>)
            })
        },
        demo: |db, _| Box::pin(directory::demo::load(db)),
    },
    Service {
        name: connection_manager::NAME,
        about: "Connections between projects.",
        migrations: connection_manager::migrations,
        start: |db, p| {
            Box::pin(async move {
                let name = connection_manager::NAME;
                Ok(Box::new(connection_manager::ConnectionManager::new(
                    db,
                    p.bus.clone(),
                    p.directory(name),
                    p.drawings(name),
                    p.clock.clone(),
                )) as Box<dyn Mount>)
            })
        },
        demo: |db, _| Box::pin(connection_manager::demo::load(db)),
    },
    Service {
        name: drawings_sync::NAME,
        about: "The Drawings tool and its sync to connected projects.",
        migrations: drawings_sync::migrations,
        start: |db, p| {
            Box::pin(async move {
                let name = drawings_sync::NAME;
                let service =
                    drawings_sync::DrawingsSync::start(p.foundation(db, name), p.drawings).await?;
                Ok(Box::new(service) as Box<dyn Mount>)
            })
        },
        demo: |_, _| Box::pin(async { Ok(false) }),
    },
    Service {
        name: rfi_sync::NAME,
        about: "The RFIs tool and its sync to connected projects.",
        migrations: rfi_sync::migrations,
        start: |db, p| {
            Box::pin(async move {
                let name = rfi_sync::NAME;
                let service =
                    rfi_sync::RfiSync::start(p.foundation(db, name), p.drawings(name), p.rfis)
                        .await?;
                Ok(Box::new(service) as Box<dyn Mount>)
            })
        },
        demo: |db, blobs| Box::pin(rfi_sync::demo::load(db, blobs)),
    },
    Service {
        name: submittal_sync::NAME,
        about: "The Submittals tool and its sync to connected projects.",
        migrations: submittal_sync::migrations,
        start: |db, p| {
            Box::pin(async move {
                let name = submittal_sync::NAME;
                let service =
                    submittal_sync::SubmittalSync::start(p.foundation(db, name), p.submittals)
                        .await?;
                Ok(Box::new(service) as Box<dyn Mount>)
            })
        },
        demo: |db, blobs| Box::pin(submittal_sync::demo::load(db, blobs)),
    },
    Service {
        name: notification::NAME,
        about: "Notifications by inbox and email.",
        migrations: notification::migrations,
        start: |db, p| {
            Box::pin(async move {
                let service = notification::Notification::start(
                    db,
                    p.bus.clone(),
                    p.directory(notification::NAME),
                    p.clock.clone(),
                    p.mail.clone(),
                )
                .await?;
                Ok(Box::new(service) as Box<dyn Mount>)
            })
        },
        demo: |_, _| Box::pin(async { Ok(false) }),
    },
];

/// The service called `name`.
pub fn find(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name == name)
}

/// Every service's name, in [`SERVICES`] order.
pub fn names() -> Vec<&'static str> {
    SERVICES.iter().map(|s| s.name).collect()
}
