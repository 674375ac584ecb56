//! The events the directory publishes. It consumes none.

use connectability_events::Envelope;
use connectability_platform::events::envelope;
use connectability_proto::directory::v1 as pb;

pub const SOURCE: &str = "connectability/directory";

pub fn company_created(company: &pb::Company, actor: &str) -> Envelope {
    let msg = pb::CompanyCreated {
        company: Some(company.clone()),
        actor_id: actor.to_string(),
    };
    envelope(SOURCE, format!("companies/{}", company.id), &msg)
}

pub fn company_admin_changed(admin: &pb::CompanyAdmin, actor: &str) -> Envelope {
    let msg = pb::CompanyAdminChanged {
        company_admin: Some(admin.clone()),
        actor_id: actor.to_string(),
    };
    envelope(
        SOURCE,
        format!("companies/{}/admins/{}", admin.company_id, admin.user_id),
        &msg,
    )
}

pub fn user_created(user: &pb::User, actor: &str) -> Envelope {
    let msg = pb::UserCreated {
        user: Some(user.clone()),
        actor_id: actor.to_string(),
    };
    envelope(SOURCE, format!("users/{}", user.id), &msg)
}

pub fn project_created(project: &pb::Project, actor: &str) -> Envelope {
    let msg = pb::ProjectCreated {
        project: Some(project.clone()),
        actor_id: actor.to_string(),
    };
    envelope(SOURCE, format!("projects/{}", project.id), &msg)
}

pub fn project_updated(project: &pb::Project, actor: &str) -> Envelope {
    let msg = pb::ProjectUpdated {
        project: Some(project.clone()),
        actor_id: actor.to_string(),
    };
    envelope(SOURCE, format!("projects/{}", project.id), &msg)
}

fn member_subject(project_id: &str, user_id: &str) -> String {
    format!("projects/{project_id}/members/{user_id}")
}

pub fn member_added(member: &pb::ProjectMember, actor: &str) -> Envelope {
    let msg = pb::ProjectMemberAdded {
        member: Some(member.clone()),
        actor_id: actor.to_string(),
    };
    envelope(
        SOURCE,
        member_subject(&member.project_id, &member.user_id),
        &msg,
    )
}

pub fn member_updated(member: &pb::ProjectMember, actor: &str) -> Envelope {
    let msg = pb::ProjectMemberUpdated {
        member: Some(member.clone()),
        actor_id: actor.to_string(),
    };
    envelope(
        SOURCE,
        member_subject(&member.project_id, &member.user_id),
        &msg,
    )
}

pub fn member_removed(project_id: &str, user_id: &str, actor: &str) -> Envelope {
    let msg = pb::ProjectMemberRemoved {
        project_id: project_id.to_string(),
        user_id: user_id.to_string(),
        actor_id: actor.to_string(),
    };
    envelope(SOURCE, member_subject(project_id, user_id), &msg)
}
