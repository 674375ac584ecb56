//! Generated types for every Connectability context (`connectability.<context>.v1`).

/// The encoded descriptor set of every proto, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("connectability_descriptor");

/// An event payload: a protobuf message whose full name is its CloudEvents `type`.
pub trait EventMessage: prost::Message + Default {
    /// Full protobuf name, e.g. `connectability.directory.v1.ProjectCreated`.
    const EVENT_TYPE: &'static str;
}

macro_rules! event_messages {
    ($package:literal => $($name:ident),+ $(,)?) => {
        $(impl $crate::EventMessage for $name {
            const EVENT_TYPE: &'static str = concat!($package, ".", stringify!($name));
        })+
    };
}

/// What every synced tool shares: sync status and stored files (`connectability.sync.v1`).
/// Each tool's module re-exports these, so `rfis::v1::SyncStatus` is this `SyncStatus`.
pub mod sync {
    pub mod v1 {
        tonic::include_proto!("connectability.sync.v1");
    }
}

macro_rules! shared_sync_messages {
    () => {
        pub use crate::sync::v1::{
            DownloadFileRequest, DownloadFileResponse, File, GetSyncStatusRequest, SyncState,
            SyncStatus, UploadFileRequest, WatchSyncStatusRequest, download_file_response,
            upload_file_request,
        };
    };
}

/// Every `ErrorInfo.reason` a service answers with (`connectability.errors.v1.ErrorReason`).
pub mod errors {
    pub mod v1 {
        tonic::include_proto!("connectability.errors.v1");
    }
}

pub mod connections {
    pub mod v1 {
        tonic::include_proto!("connectability.connections.v1");

        event_messages!("connectability.connections.v1" =>
            ConnectionRequested, ConnectionApproved, ConnectionRejected, ConnectionActivated,
            ConnectionUndone, ConnectionFeaturesAdded, ConnectionDisconnected,
        );
    }
}

pub mod drawings {
    pub mod v1 {
        tonic::include_proto!("connectability.drawings.v1");
        shared_sync_messages!();

        event_messages!("connectability.drawings.v1" =>
            RevisionsPublished, DrawingUpdated, DrawingDeleted, InitialSyncCompleted,
            DrawingsCopied, DrawingsDeletedUpstream,
        );
    }
}

pub mod rfis {
    pub mod v1 {
        tonic::include_proto!("connectability.rfis.v1");
        shared_sync_messages!();

        event_messages!("connectability.rfis.v1" =>
            RfiClosed, RfiReopened, RfiDeleted, InitialSyncCompleted, RfisCopied,
        );
    }
}

pub mod submittals {
    pub mod v1 {
        tonic::include_proto!("connectability.submittals.v1");
        shared_sync_messages!();

        event_messages!("connectability.submittals.v1" =>
            SubmittalDistributed, SubmittalRevised, SubmittalStatusChanged, InitialSyncCompleted,
        );
    }
}

pub mod notifications {
    pub mod v1 {
        tonic::include_proto!("connectability.notifications.v1");
    }
}

pub mod directory {
    pub mod v1 {
        tonic::include_proto!("connectability.directory.v1");

        event_messages!("connectability.directory.v1" =>
            CompanyCreated, CompanyAdminChanged, ProjectCreated, ProjectUpdated, UserCreated,
            ProjectMemberAdded, ProjectMemberUpdated, ProjectMemberRemoved,
        );
    }
}
