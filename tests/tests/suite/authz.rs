//! The authorization matrix (issue 11): every RPC of every service, read from the reflection
//! descriptor set, called by every class of caller. The test fails if an RPC has no entry.
//! The table it prints is kept in docs/authz-matrix.md (`UPDATE_AUTHZ_DOC=1` rewrites it).

use std::collections::BTreeMap;

use connectability_auth::{Claims, Issuer};
use connectability_testkit::{Backend, Service, TestApp, eventually};
use connectability_tests::{grpc::every_rpc, json_rpc::json_call};
use serde_json::{Value, json};
use tonic::Code;

on_both_backends!(every_rpc_answers_every_caller_class_as_the_matrix_says);

/// Who makes the call that must succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// The victim company's admin (company admin, ADMIN on every tool of its projects).
    Admin,
    Operator,
    /// The one service allowed to call a service-only RPC.
    Service(&'static str),
    /// Any of the services (the directory's access queries).
    AnyService,
}

/// What one caller class may be answered.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Is(Code),
    /// Either (documented per RPC: a member may be told the record exists).
    Either(Code, Code),
    /// OK, and nothing of the victim's in the answer (lists scoped to the caller).
    OkWithoutVictimData,
}

use Expect::*;
const NF: Expect = Is(Code::NotFound);
const PD: Expect = Is(Code::PermissionDenied);
const OK: Expect = Is(Code::Ok);
const NF_PD: Expect = Either(Code::NotFound, Code::PermissionDenied);

/// One RPC's row: the request (with `@name@` for the victim's ids), what a user of another
/// company and a member without the tool level get, and who succeeds.
struct Entry {
    rpc: &'static str,
    request: Value,
    stranger: Expect,
    member: Expect,
    ok_as: Who,
}

const C: &str = "connectability.connections.v1.ConnectionService";
const D: &str = "connectability.directory.v1.DirectoryService";
const W: &str = "connectability.drawings.v1.DrawingService";
const N: &str = "connectability.notifications.v1.NotificationService";
const R: &str = "connectability.rfis.v1.RfiService";
const S: &str = "connectability.submittals.v1.SubmittalService";

fn e(
    service: &str,
    method: &str,
    request: Value,
    stranger: Expect,
    member: Expect,
    ok_as: Who,
) -> Entry {
    Entry {
        rpc: Box::leak(format!("{service}/{method}").into_boxed_str()),
        request,
        stranger,
        member,
        ok_as,
    }
}

fn pdf_upload(project: &str, content_type: &str) -> Value {
    json!([
        {"header": {"project_id": project, "filename": "a.pdf", "content_type": content_type}},
        {"chunk": "JVBERi0xLjQKJSBhdXRoego="}
    ])
}

/// The matrix, in the order the successful calls run (reads, then creates and changes, then
/// what removes or ends things).
fn matrix() -> Vec<Entry> {
    use Who::*;
    let admin_perms = json!({"connection_manager": "PERMISSION_LEVEL_ADMIN", "drawings": "PERMISSION_LEVEL_ADMIN", "rfis": "PERMISSION_LEVEL_ADMIN", "submittals": "PERMISSION_LEVEL_ADMIN"});
    vec![
        // directory
        e(D, "GetCompany", json!({"id": "@v@"}), NF, OK, Admin),
        e(
            D,
            "ListCompanies",
            json!({}),
            OkWithoutVictimData,
            OK,
            Operator,
        ),
        e(D, "GetProject", json!({"id": "@vp@"}), NF, OK, Admin),
        e(
            D,
            "ListProjects",
            json!({"company_id": "@v@"}),
            OkWithoutVictimData,
            OK,
            Admin,
        ),
        e(D, "GetUser", json!({"id": "@va@"}), NF, OK, Admin),
        e(
            D,
            "ListProjectMembers",
            json!({"project_id": "@vp@"}),
            NF,
            OK,
            Admin,
        ),
        e(
            D,
            "GetProjectAccess",
            json!({"project_id": "@vp@", "user_id": "@va@"}),
            PD,
            PD,
            AnyService,
        ),
        e(
            D,
            "GetCompanyAccess",
            json!({"company_id": "@v@", "user_id": "@va@"}),
            PD,
            PD,
            AnyService,
        ),
        e(
            D,
            "CreateCompany",
            json!({"name": "New Co", "storage_location": "us-east"}),
            PD,
            PD,
            Operator,
        ),
        e(
            D,
            "SetCompanyAdmin",
            json!({"company_id": "@v@", "user_id": "@vn@", "admin": false}),
            NF,
            PD,
            Admin,
        ),
        e(
            D,
            "CreateProject",
            json!({"company_id": "@v@", "name": "Annex"}),
            NF,
            PD,
            Admin,
        ),
        e(
            D,
            "UpdateProject",
            json!({"project": {"id": "@vp@", "name": "Tower 2"}, "update_mask": "name"}),
            NF,
            PD,
            Admin,
        ),
        e(
            D,
            "CreateUser",
            json!({"company_id": "@v@", "display_name": "New", "email": "new@victim.example"}),
            NF,
            PD,
            Admin,
        ),
        e(
            D,
            "AddProjectMember",
            json!({"project_id": "@vp@", "user_id": "@vn@", "permissions": admin_perms}),
            NF,
            PD,
            Admin,
        ),
        e(
            D,
            "UpdateProjectMember",
            json!({"project_id": "@vp@", "user_id": "@vn@", "permissions": {"drawings": "PERMISSION_LEVEL_READ_ONLY"}}),
            NF,
            PD,
            Admin,
        ),
        // connections
        e(
            C,
            "GetConnection",
            json!({"id": "@connection@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            C,
            "ListConnections",
            json!({"project_id": "@vp@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            C,
            "ListConnectionHistory",
            json!({"connection_id": "@connection@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            C,
            "ListConnectableProjects",
            json!({"downstream_project_id": "@vd@"}),
            OkWithoutVictimData,
            OK,
            Admin,
        ),
        e(
            C,
            "GetCompanyConnectionSettings",
            json!({"company_id": "@v@"}),
            NF,
            OK,
            Admin,
        ),
        e(
            C,
            "CheckConnectionEligibility",
            json!({"downstream_project_id": "@vd9@", "upstream_project_id": "@vp@", "features": ["FEATURE_DRAWINGS"]}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            C,
            "RequestConnection",
            json!({"downstream_project_id": "@vd9@", "upstream_project_id": "@vp@", "features": ["FEATURE_DRAWINGS"]}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            C,
            "UpdateCompanyConnectionSettings",
            json!({"company_id": "@v@", "approval_mode": "APPROVAL_MODE_REQUIRE_REVIEW"}),
            NF,
            PD,
            Admin,
        ),
        e(
            C,
            "ApproveConnection",
            json!({"id": "@pending_a@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            C,
            "RejectConnection",
            json!({"id": "@pending_r@", "message": "not now"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            C,
            "UndoConnection",
            json!({"id": "@pending_u@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            C,
            "AddConnectionFeatures",
            json!({"id": "@conn2@", "features": ["FEATURE_RFIS"]}),
            NF,
            NF_PD,
            Admin,
        ),
        // drawings
        e(
            W,
            "ListDrawingAreas",
            json!({"project_id": "@vp@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "ListDrawingSets",
            json!({"project_id": "@vp@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "ListDrawings",
            json!({"project_id": "@vp@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "GetDrawing",
            json!({"id": "@drawing@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "ListDrawingRevisions",
            json!({"drawing_id": "@drawing@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "ListDeletedDrawingRevisions",
            json!({"project_id": "@vp@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "ListMarkups",
            json!({"project_id": "@vp@", "revision_id": "@revision@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(W, "DownloadFile", json!({"id": "@file@"}), NF, NF_PD, Admin),
        e(
            W,
            "GetSyncStatus",
            json!({"connection_id": "@connection@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "WatchSyncStatus",
            json!({"connection_id": "@connection@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "GetPublishedRevisionCount",
            json!({"project_id": "@vp@"}),
            PD,
            PD,
            Service("connection-manager"),
        ),
        e(
            W,
            "DownloadRevisionFile",
            json!({"project_id": "@vp@", "revision_id": "@revision@", "user_id": "@va@"}),
            PD,
            PD,
            Service("rfi-sync"),
        ),
        e(
            W,
            "CreateDrawingArea",
            json!({"project_id": "@vp@", "name": "Level 2"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "CreateDrawingSet",
            json!({"project_id": "@vp@", "name": "Addendum", "date": "2026-03-02"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "UploadFile",
            pdf_upload("@vp@", "application/pdf"),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "CreateDrawingRevision",
            json!({"project_id": "@vp@", "area_id": "@area@", "set_id": "@set@", "number": "Z-1", "title": "New", "discipline_name": "Architectural", "discipline_position": 1, "revision_number": "0", "revision_status": "Issued", "drawing_date": "2026-02-14", "received_date": "2026-02-20", "file_id": "@file@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "PublishDrawingRevisions",
            json!({"project_id": "@vp@", "revision_ids": ["@revision2@"]}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "UpdateDrawing",
            json!({"drawing": {"id": "@drawing@", "title": "Renamed"}, "update_mask": "title"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            W,
            "CreateMarkup",
            json!({"revision_id": "@revision@", "body": "check this"}),
            NF,
            NF_PD,
            Admin,
        ),
        // notifications
        e(
            N,
            "GetDistributionList",
            json!({"project_id": "@vp@", "tool": "TOOL_DRAWINGS"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            N,
            "UpdateDistributionList",
            json!({"project_id": "@vp@", "tool": "TOOL_DRAWINGS", "narrowed": false}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            N,
            "ListNotifications",
            json!({}),
            OkWithoutVictimData,
            OkWithoutVictimData,
            Admin,
        ),
        e(
            N,
            "MarkNotificationsRead",
            json!({"ids": ["@notification@"]}),
            OkWithoutVictimData,
            OkWithoutVictimData,
            Admin,
        ),
        // RFIs
        e(R, "GetRfi", json!({"id": "@rfi@"}), NF, NF_PD, Admin),
        e(
            R,
            "ListRfis",
            json!({"project_id": "@vp@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "DownloadFile",
            json!({"id": "@rfi_file@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "GetRfiSettings",
            json!({"project_id": "@vp@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "GetSyncStatus",
            json!({"connection_id": "@connection@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "WatchSyncStatus",
            json!({"connection_id": "@connection@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "CreateRfi",
            json!({"project_id": "@vp@", "subject": "Beam", "question": "Lower it?"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "UpdateRfi",
            json!({"rfi": {"id": "@rfi@", "subject": "Beam pocket"}, "update_mask": "subject"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "AddRfiResponse",
            json!({"rfi_id": "@rfi@", "body": "Yes"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "MarkOfficialResponse",
            json!({"rfi_id": "@rfi@", "response_id": "@response@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "UpdateRfiSettings",
            json!({"project_id": "@vp@", "official_responses_only": false}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "UploadFile",
            pdf_upload("@vp@", "application/pdf"),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "LinkRfi",
            json!({"rfi_id": "@rfi_down@", "connected_rfi_id": "@rfi_copy@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            R,
            "CopyOfficialAnswer",
            json!({"rfi_id": "@rfi_down@", "connected_rfi_id": "@rfi_copy@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(R, "CloseRfi", json!({"id": "@rfi@"}), NF, NF_PD, Admin),
        e(
            R,
            "ReopenRfi",
            json!({"id": "@rfi_closed@"}),
            NF,
            NF_PD,
            Admin,
        ),
        // submittals
        e(
            S,
            "GetSubmittal",
            json!({"id": "@submittal@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "ListSubmittals",
            json!({"project_id": "@vp@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "ListDistributions",
            json!({"submittal_id": "@submittal@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "DownloadFile",
            json!({"id": "@sub_file@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "GetSyncStatus",
            json!({"connection_id": "@connection@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "WatchSyncStatus",
            json!({"connection_id": "@connection@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "CreateSubmittal",
            json!({"project_id": "@vp@", "title": "Switchgear"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "UpdateSubmittal",
            json!({"submittal": {"id": "@submittal@", "title": "Switchgear 2"}, "update_mask": "title"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "UploadFile",
            pdf_upload("@vp@", "application/pdf"),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "CreateSubmittalRevision",
            json!({"submittal_id": "@submittal@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "AddApproverResponse",
            json!({"submittal_id": "@submittal_ap@", "response": "APPROVER_RESPONSE_APPROVED", "comment": "fine"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "DistributeSubmittal",
            json!({"submittal_id": "@submittal@", "message": "for the record"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "LinkSubmittal",
            json!({"submittal_id": "@sub_down@", "connected_submittal_id": "@sub_copy@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "CloseSubmittal",
            json!({"id": "@submittal@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            S,
            "ReopenSubmittal",
            json!({"id": "@submittal@"}),
            NF,
            NF_PD,
            Admin,
        ),
        // what removes or ends things, last
        e(
            W,
            "DeleteDrawing",
            json!({"id": "@drawing_del@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(R, "DeleteRfi", json!({"id": "@rfi_del@"}), NF, NF_PD, Admin),
        e(
            S,
            "DeleteSubmittal",
            json!({"id": "@submittal_del@"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            C,
            "DisconnectConnection",
            json!({"id": "@conn2@", "reason": "done"}),
            NF,
            NF_PD,
            Admin,
        ),
        e(
            D,
            "RemoveProjectMember",
            json!({"project_id": "@vp@", "user_id": "@vn@"}),
            NF,
            PD,
            Admin,
        ),
    ]
}

/// Replaces every `@name@` in the request with the victim world's ids.
fn fill(request: &Value, ids: &BTreeMap<String, String>) -> Value {
    let mut text = request.to_string();
    for (name, id) in ids {
        text = text.replace(&format!("@{name}@"), id);
    }
    let unfilled = text.split('@').skip(1).step_by(2).any(|name| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    });
    assert!(!unfilled, "an id the world lacks: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The victim's world, built through gRPC; its ids by name.
async fn victim(app: &TestApp) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    let op = format!("Bearer {}", app.operator_token());
    macro_rules! call {
        ($auth:expr, $rpc:expr, $req:expr) => {
            json_call(app.channel(), $rpc, &$req, Some($auth))
                .await
                .unwrap_or_else(|s| panic!("{}: {s:?}", $rpc))
        };
    }
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    let company = |n: &str| json!({"name": n, "storage_location": "us-east"});
    let v = id(&call!(
        &op,
        "connectability.directory.v1.DirectoryService/CreateCompany",
        company("Victim GC")
    ));
    let o = id(&call!(
        &op,
        "connectability.directory.v1.DirectoryService/CreateCompany",
        company("Other Co")
    ));
    let user = |c: &str, n: &str| json!({"company_id": c, "display_name": n, "email": format!("{n}@{c}.example")});
    let va = id(&call!(&op, &format!("{D}/CreateUser"), user(&v, "va")));
    let vm = id(&call!(&op, &format!("{D}/CreateUser"), user(&v, "vm")));
    let vn = id(&call!(&op, &format!("{D}/CreateUser"), user(&v, "vn")));
    let ox = id(&call!(&op, &format!("{D}/CreateUser"), user(&o, "ox")));
    for (c, u) in [(&v, &va), (&o, &ox)] {
        call!(
            &op,
            &format!("{D}/SetCompanyAdmin"),
            json!({"company_id": c, "user_id": u, "admin": true})
        );
    }
    let project = |c: &str, n: &str| json!({"company_id": c, "name": n});
    let mut projects = BTreeMap::new();
    for name in ["vp", "vd", "vd2", "vd3", "vd4", "vd5", "vd9"] {
        let p = id(&call!(
            &op,
            &format!("{D}/CreateProject"),
            project(&v, name)
        ));
        projects.insert(name, p);
    }
    let op_project = id(&call!(
        &op,
        &format!("{D}/CreateProject"),
        project(&o, "Other tower")
    ));
    let admin = json!({"connection_manager": "PERMISSION_LEVEL_ADMIN", "drawings": "PERMISSION_LEVEL_ADMIN", "rfis": "PERMISSION_LEVEL_ADMIN", "submittals": "PERMISSION_LEVEL_ADMIN"});
    for p in projects.values() {
        call!(
            &op,
            &format!("{D}/AddProjectMember"),
            json!({"project_id": p, "user_id": va, "permissions": admin})
        );
    }
    call!(
        &op,
        &format!("{D}/AddProjectMember"),
        json!({"project_id": projects["vp"], "user_id": vm, "permissions": {}})
    );
    call!(
        &op,
        &format!("{D}/AddProjectMember"),
        json!({"project_id": op_project, "user_id": ox, "permissions": admin})
    );
    let a = format!("Bearer {}", app.user_token(&va));
    let vp = projects["vp"].clone();
    let connect = |down: &str, features: Value| json!({"downstream_project_id": down, "upstream_project_id": vp, "features": features});
    let connection = id(&call!(
        &a,
        &format!("{C}/RequestConnection"),
        connect(
            &projects["vd"],
            json!(["FEATURE_DRAWINGS", "FEATURE_RFIS", "FEATURE_SUBMITTALS"])
        )
    ));
    let conn2 = id(&call!(
        &a,
        &format!("{C}/RequestConnection"),
        connect(&projects["vd5"], json!(["FEATURE_DRAWINGS"]))
    ));
    call!(
        &a,
        &format!("{C}/UpdateCompanyConnectionSettings"),
        json!({"company_id": v, "approval_mode": "APPROVAL_MODE_REQUIRE_REVIEW"})
    );
    for (name, down) in [
        ("pending_a", "vd2"),
        ("pending_r", "vd3"),
        ("pending_u", "vd4"),
    ] {
        let c = call!(
            &a,
            &format!("{C}/RequestConnection"),
            connect(&projects[down], json!(["FEATURE_DRAWINGS"]))
        );
        assert_eq!(c["status"], "CONNECTION_STATUS_PENDING", "{name}: {c}");
        ids.insert(name.to_string(), id(&c));
    }
    // Drawings: a published sheet (and one to delete), an unpublished revision.
    let area = id(&call!(
        &a,
        &format!("{W}/CreateDrawingArea"),
        json!({"project_id": vp, "name": "Level 1"})
    ));
    let set = id(&call!(
        &a,
        &format!("{W}/CreateDrawingSet"),
        json!({"project_id": vp, "name": "IFC", "date": "2026-03-01"})
    ));
    let file = id(&call!(
        &a,
        &format!("{W}/UploadFile"),
        pdf_upload(&vp, "application/pdf")
    ));
    let revision = |n: &str| json!({"project_id": vp, "area_id": area, "set_id": set, "number": n, "title": n, "discipline_name": "Architectural", "discipline_position": 1, "revision_number": "0", "revision_status": "Issued", "drawing_date": "2026-02-14", "received_date": "2026-02-20", "file_id": file});
    let r1 = call!(&a, &format!("{W}/CreateDrawingRevision"), revision("A-1"));
    let r2 = call!(&a, &format!("{W}/CreateDrawingRevision"), revision("A-2"));
    let r3 = call!(&a, &format!("{W}/CreateDrawingRevision"), revision("A-3"));
    call!(
        &a,
        &format!("{W}/PublishDrawingRevisions"),
        json!({"project_id": vp, "revision_ids": [id(&r1), id(&r3)]})
    );
    // RFIs: one open with a response, one closed (copied to vd), one to delete, one in vd.
    let rfi = |p: &str, s: &str| json!({"project_id": p, "subject": s, "question": "Why?"});
    let open = call!(&a, &format!("{R}/CreateRfi"), rfi(&vp, "Open"));
    let answered = call!(
        &a,
        &format!("{R}/AddRfiResponse"),
        json!({"rfi_id": id(&open), "body": "Because"})
    );
    let closed = call!(&a, &format!("{R}/CreateRfi"), rfi(&vp, "Closed"));
    let official = call!(
        &a,
        &format!("{R}/AddRfiResponse"),
        json!({"rfi_id": id(&closed), "body": "Official"})
    );
    call!(
        &a,
        &format!("{R}/MarkOfficialResponse"),
        json!({"rfi_id": id(&closed), "response_id": official["responses"][0]["id"]})
    );
    call!(&a, &format!("{R}/CloseRfi"), json!({"id": id(&closed)}));
    let rfi_del = call!(&a, &format!("{R}/CreateRfi"), rfi(&vp, "Delete me"));
    let rfi_down = call!(
        &a,
        &format!("{R}/CreateRfi"),
        rfi(&projects["vd"], "Downstream")
    );
    let rfi_file = call!(
        &a,
        &format!("{R}/UploadFile"),
        pdf_upload(&vp, "application/pdf")
    );
    // Submittals: one plain, one awaiting va's answer, one to delete, one distributed (copied
    // to vd), one in vd.
    let sub = |p: &str, t: &str, approvers: Value| json!({"project_id": p, "title": t, "approver_ids": approvers});
    let submittal = call!(
        &a,
        &format!("{S}/CreateSubmittal"),
        sub(&vp, "Plain", json!([]))
    );
    let submittal_ap = call!(
        &a,
        &format!("{S}/CreateSubmittal"),
        sub(&vp, "Approve", json!([va]))
    );
    let submittal_del = call!(
        &a,
        &format!("{S}/CreateSubmittal"),
        sub(&vp, "Delete me", json!([]))
    );
    let shared = call!(
        &a,
        &format!("{S}/CreateSubmittal"),
        sub(&vp, "Shared", json!([va]))
    );
    call!(
        &a,
        &format!("{S}/DistributeSubmittal"),
        json!({"submittal_id": id(&shared), "message": "fyi"})
    );
    let sub_down = call!(
        &a,
        &format!("{S}/CreateSubmittal"),
        sub(&projects["vd"], "Downstream", json!([]))
    );
    let sub_file = call!(
        &a,
        &format!("{S}/UploadFile"),
        pdf_upload(&vp, "application/pdf")
    );
    // The copies downstream, and a notification for va: the first row of a list `pick`
    // accepts, once there is one.
    let vd = projects["vd"].clone();
    let first = |what: &'static str,
                 method: String,
                 body: Value,
                 key: &'static str,
                 pick: fn(&Value) -> bool| {
        let (channel, a) = (app.channel(), a.clone());
        eventually(what, std::time::Duration::from_secs(30), move || {
            let (channel, a, method, body) =
                (channel.clone(), a.clone(), method.clone(), body.clone());
            async move {
                let l = json_call(channel, &method, &body, Some(&a)).await.ok()?;
                l[key].as_array()?.iter().find(|r| pick(r)).map(id)
            }
        })
    };
    let rfi_copy = first(
        "the closed RFI copied downstream",
        format!("{R}/ListRfis"),
        json!({"project_id": vd}),
        "rfis",
        |r| r["connected"] == true,
    )
    .await;
    let sub_copy = first(
        "the distributed submittal copied downstream",
        format!("{S}/ListSubmittals"),
        json!({"project_id": vd}),
        "submittals",
        |r| r["connected"] == true,
    )
    .await;
    let notification = first(
        "a notification for the victim's admin",
        format!("{N}/ListNotifications"),
        json!({}),
        "notifications",
        |_| true,
    )
    .await;
    for (k, val) in [
        ("v", v),
        ("o", o),
        ("va", va),
        ("vm", vm),
        ("vn", vn),
        ("ox", ox),
        ("connection", connection),
        ("conn2", conn2),
        ("area", area),
        ("set", set),
        ("file", file),
        ("drawing", r1["drawing_id"].as_str().unwrap().to_string()),
        ("revision", id(&r1)),
        ("revision2", id(&r2)),
        (
            "drawing_del",
            r3["drawing_id"].as_str().unwrap().to_string(),
        ),
        ("rfi", id(&open)),
        (
            "response",
            answered["responses"][0]["id"].as_str().unwrap().to_string(),
        ),
        ("rfi_closed", id(&closed)),
        ("rfi_del", id(&rfi_del)),
        ("rfi_down", id(&rfi_down)),
        ("rfi_file", id(&rfi_file)),
        ("rfi_copy", rfi_copy),
        ("submittal", id(&submittal)),
        ("submittal_ap", id(&submittal_ap)),
        ("submittal_del", id(&submittal_del)),
        ("sub_down", id(&sub_down)),
        ("sub_file", id(&sub_file)),
        ("sub_copy", sub_copy),
        ("notification", notification),
    ] {
        ids.insert(k.to_string(), val);
    }
    for (k, p) in projects {
        ids.insert(k.to_string(), p);
    }
    ids
}

fn code_of(r: &Result<Value, tonic::Status>) -> Code {
    r.as_ref().err().map_or(Code::Ok, |s| s.code())
}

fn short(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Unauthenticated => "UNAUTHENTICATED",
        Code::NotFound => "NOT_FOUND",
        Code::PermissionDenied => "PERMISSION_DENIED",
        _ => "other",
    }
}

/// What a cell says: the code answered, and for lists scoped to the caller that they were.
fn answered(e: Expect, code: Code) -> String {
    match e {
        OkWithoutVictimData => "OK (own data only)".into(),
        _ => short(code).into(),
    }
}

fn describe(e: Expect) -> String {
    match e {
        Is(c) => short(c).into(),
        Either(a, b) => format!("{} or {}", short(a), short(b)),
        OkWithoutVictimData => "OK (own data only)".into(),
    }
}

async fn every_rpc_answers_every_caller_class_as_the_matrix_says(backend: Backend) {
    let app = TestApp::spawn(backend, Service::ALL).await;
    let matrix = matrix();
    // Every RPC has exactly one row, and every row is an RPC.
    let rpcs: Vec<String> = every_rpc().iter().map(|r| r.name().to_string()).collect();
    let rows: Vec<&str> = matrix.iter().map(|e| e.rpc).collect();
    let missing: Vec<&String> = rpcs
        .iter()
        .filter(|r| !rows.contains(&r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "RPCs without a row in the authorization matrix: {missing:?}"
    );
    for row in &rows {
        assert!(rpcs.iter().any(|r| r == row), "a row for no RPC: {row}");
        assert_eq!(
            rows.iter().filter(|r| *r == row).count(),
            1,
            "two rows for {row}"
        );
    }

    let ids = victim(&app).await;
    let victim_ids: Vec<&String> = ["v", "vp", "vd", "va", "vm", "connection", "notification"]
        .iter()
        .map(|k| &ids[*k])
        .collect();
    let bearer = |t: String| format!("Bearer {t}");
    let expired = bearer(app.issuer.mint_claims(&Claims {
        sub: ids["va"].clone(),
        iat: 1,
        exp: 2,
        nbf: None,
        roles: vec![],
    }));
    let other_key = bearer(Issuer::hs256(b"not the server's key").user(&ids["va"]));
    let alg_none = {
        use base64::Engine as _;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        bearer(format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"})),
            b64(json!({"sub": ids["va"], "exp": 4_000_000_000u64, "roles": ["operator"]}))
        ))
    };
    let stranger = bearer(app.user_token(&ids["ox"]));
    let member = bearer(app.user_token(&ids["vm"]));
    let admin = bearer(app.user_token(&ids["va"]));
    let operator = bearer(app.operator_token());
    let service = |name: &str| bearer(app.issuer.service(name));

    let mut failures = Vec::new();
    let mut table = vec![
        "| RPC | no token | expired | other key | alg none | other company | member without level | right role |".to_string(),
        "|---|---|---|---|---|---|---|---|".to_string(),
    ];
    let check = |what: &str,
                 rpc: &str,
                 expect: Expect,
                 got: &Result<Value, tonic::Status>,
                 failures: &mut Vec<String>| {
        let code = code_of(got);
        let ok = match expect {
            Is(c) => code == c,
            Either(a, b) => code == a || code == b,
            OkWithoutVictimData => {
                code == Code::Ok && {
                    let text = got.as_ref().unwrap().to_string();
                    !victim_ids.iter().any(|id| text.contains(id.as_str()))
                }
            }
        };
        if !ok {
            failures.push(format!(
                "{rpc} as {what}: expected {}, got {code:?} {:?}",
                describe(expect),
                got.as_ref().err().map(|s| s.message().to_string())
            ));
        }
    };
    // What the other company and the member were answered (within what the row allows).
    let mut observed = BTreeMap::new();
    // Refusals first, for every row: none of them may change anything.
    for entry in &matrix {
        let request = fill(&entry.request, &ids);
        // The four token classes at once: none of them gets past the interceptor.
        let classes = [
            ("no token", None),
            ("expired", Some(expired.as_str())),
            ("other key", Some(other_key.as_str())),
            ("alg none", Some(alg_none.as_str())),
        ];
        let answers = futures::future::join_all(
            classes
                .iter()
                .map(|(_, token)| json_call(app.channel(), entry.rpc, &request, *token)),
        )
        .await;
        for ((what, _), got) in classes.iter().zip(&answers) {
            check(
                what,
                entry.rpc,
                Is(Code::Unauthenticated),
                got,
                &mut failures,
            );
        }
        let got = json_call(app.channel(), entry.rpc, &request, Some(&stranger)).await;
        check(
            "other company",
            entry.rpc,
            entry.stranger,
            &got,
            &mut failures,
        );
        let as_stranger = code_of(&got);
        let got = json_call(app.channel(), entry.rpc, &request, Some(&member)).await;
        check(
            "member without level",
            entry.rpc,
            entry.member,
            &got,
            &mut failures,
        );
        observed.insert(entry.rpc, (as_stranger, code_of(&got)));
    }
    // Then the right role, in the matrix's order.
    for entry in &matrix {
        let request = fill(&entry.request, &ids);
        let (who, token) = match entry.ok_as {
            Who::Admin => ("victim admin".to_string(), admin.clone()),
            Who::Operator => ("operator".to_string(), operator.clone()),
            Who::Service(name) => (name.to_string(), service(name)),
            Who::AnyService => ("a service".to_string(), service("connection-manager")),
        };
        if let Who::Service(allowed) = entry.ok_as {
            // Service-only: every other service, the operator and the victim's admin are refused.
            let others = connectability_auth::SERVICE_NAMES
                .iter()
                .filter(|n| **n != allowed)
                .map(|n| (n.to_string(), service(n)))
                .chain([
                    ("operator".to_string(), operator.clone()),
                    ("victim admin".to_string(), admin.clone()),
                ]);
            for (what, token) in others {
                let got = json_call(app.channel(), entry.rpc, &request, Some(&token)).await;
                check(&what, entry.rpc, PD, &got, &mut failures);
            }
        }
        let got = json_call(app.channel(), entry.rpc, &request, Some(&token)).await;
        check(&who, entry.rpc, OK, &got, &mut failures);
        table.push(format!(
            "| `{}` | UNAUTHENTICATED | UNAUTHENTICATED | UNAUTHENTICATED | UNAUTHENTICATED | {} | {} | OK ({who}) |",
            entry.rpc.trim_start_matches("connectability."),
            answered(entry.stranger, observed[entry.rpc].0),
            answered(entry.member, observed[entry.rpc].1)
        ));
    }
    let table = table.join("\n");
    println!("{table}");
    assert!(
        failures.is_empty(),
        "{} authorization cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let text = format!(
        "# Authorization matrix\n\nEvery RPC of every service, called by each class of caller ({} RPCs). Written by `tests/tests/suite/authz.rs`, which checks every cell on both backends and fails if an RPC has no row; `UPDATE_AUTHZ_DOC=1 cargo nextest run -E 'test(/authz/)'` rewrites this file.\n\n- other company: a user of another company, with the victim's ids.\n- member without level: a member of the victim's project with no level on any tool, not a company admin.\n- the rows for a private RFI (a member of the same project who is not a participant) and for linked drawings: [authz-matrix-private-rfi.md](authz-matrix-private-rfi.md).\n- right role: the victim company's admin (company admin, ADMIN on every tool), the operator, or the one service allowed to call a service-only RPC, as the row says (every other service, the operator and the admin are refused those with PERMISSION_DENIED).\n\n{table}\n",
        matrix.len()
    );
    connectability_tests::keep_authz_doc("authz-matrix.md", &text);
    app.stop().await;
}
