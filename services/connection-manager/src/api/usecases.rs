//! The use cases behind the handlers: authorization against the directory, the reads
//! they need and the transactions that change state.

use super::*;
use connectability_platform::requests;

impl ConnectionApi {
    pub fn new(
        db: Db,
        relay: RelayWaker,
        directory: DirectoryGateway,
        drawings: DrawingsGateway,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            db,
            relay,
            directory,
            drawings,
            clock,
        }
    }

    /// C17's facts, asked of drawings-sync only when DRAWINGS is among `features`.
    pub(super) async fn upstream_revisions(
        &self,
        upstream: &str,
        features: &[Feature],
    ) -> Result<Option<(i64, i64)>, Status> {
        if !features.contains(&Feature::Drawings) {
            return Ok(None);
        }
        let count = self.drawings.published_revisions(upstream).await?;
        Ok(Some((count.count, count.limit)))
    }

    pub(super) async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, Status> {
        self.db.pool().acquire().await.map_err(db_err)
    }

    pub(super) async fn begin(&self) -> Result<Tx, Status> {
        self.db.begin().await.map_err(db_err)
    }

    /// A project the user may see (Y3), or NOT_FOUND.
    pub(super) async fn seen_project(
        &self,
        project: &Id,
        user: &str,
    ) -> Result<ProjectAccess, Status> {
        self.directory
            .project_access(project.as_str(), user)
            .await?
            .filter(domain::sees_project)
            .ok_or_else(|| not_found("project", project.as_str()))
    }

    pub(super) async fn company_of(&self, access: &ProjectAccess) -> Result<Company, Status> {
        self.directory
            .company(&access.project_company_id)
            .await?
            .ok_or_else(|| {
                internal(format!(
                    "company `{}` of a project is missing",
                    access.project_company_id
                ))
            })
    }

    pub(super) async fn facts(
        &self,
        user: &str,
        down: &Id,
        up: &Id,
        features: &[Feature],
    ) -> Result<Facts, Status> {
        let down_access = self.seen_project(down, user).await?;
        let up_access = self.seen_project(up, user).await?;
        let down_company = self.company_of(&down_access).await?;
        let up_company = self.company_of(&up_access).await?;
        let mut existing = db::existing(&mut *self.read().await?, down.as_str(), up.as_str())
            .await
            .map_err(db_err)?;
        existing.upstream_revisions = self.upstream_revisions(up.as_str(), features).await?;
        Ok(Facts {
            down: down_access,
            up: up_access,
            down_company,
            up_company,
            existing,
        })
    }

    /// A connection the caller may see (C18), or NOT_FOUND.
    pub(super) async fn visible(&self, id: &Id, caller: &Caller) -> Result<Visible, Status> {
        let stored = db::get(&mut *self.read().await?, id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("connection", id.as_str()))?;
        let Caller::User { user_id } = caller else {
            return Ok(Visible {
                stored,
                up: None,
                down: None,
            });
        };
        let c = &stored.connection;
        let up = self
            .directory
            .project_access(&c.upstream_project_id, user_id)
            .await?;
        let down = self
            .directory
            .project_access(&c.downstream_project_id, user_id)
            .await?;
        let sees = [&up, &down]
            .iter()
            .any(|a| a.as_ref().is_some_and(domain::sees_connections));
        if !sees {
            return Err(not_found("connection", id.as_str()));
        }
        Ok(Visible { stored, up, down })
    }

    /// Stores transition `t` of `stored` by `actor`: the connection (if nobody changed it
    /// meanwhile), its history entry and its events, in one transaction.
    pub(super) async fn apply(
        &self,
        mut stored: Stored,
        t: domain::Transition,
        actor: &str,
    ) -> Result<pb::Connection, Status> {
        let now = self.clock.now_ms();
        match t.happened {
            domain::Happened::Approved => stored.approve_ms = Some(now),
            domain::Happened::Undone {
                undo: Undo::Unapprove,
            } => stored.approve_ms = None,
            _ => {}
        }
        let (reason, added) = match &t.happened {
            domain::Happened::Rejected { message } => (message.as_str(), &[][..]),
            domain::Happened::Disconnected { reason } => (reason.as_str(), &[][..]),
            domain::Happened::FeaturesAdded { added } => ("", added.as_slice()),
            _ => ("", &[][..]),
        };
        let entry = history(&t.connection, t.action(), t.from, actor, now, reason, added);
        let out = events::of(&t, actor);
        stored.connection = t.connection.clone();
        self.save(&stored, t.from, &[entry], &out).await?;
        Ok(stored.connection)
    }

    /// Writes the change: the connection (if still in `expected` status), history, events.
    pub(super) async fn save(
        &self,
        stored: &Stored,
        expected: ConnectionStatus,
        history: &[HistoryEntry<'_>],
        events: &[Envelope],
    ) -> Result<(), Status> {
        let now = self.clock.now_ms();
        let mut tx = self.begin().await?;
        if !db::update(&mut tx, stored, expected, now)
            .await
            .map_err(db_err)?
        {
            return Err(rule(
                reason::INVALID_STATE,
                "the connection changed meanwhile; read it again",
            ));
        }
        // REJECTED and UNDONE connections do not count (C8, C10, C14): the projects are free
        // to take either role again unless another connection holds it.
        let c = &stored.connection;
        if matches!(
            c.status(),
            ConnectionStatus::Rejected | ConnectionStatus::Undone
        ) {
            db::release_roles(&mut tx, &[&c.upstream_project_id, &c.downstream_project_id])
                .await
                .map_err(db_err)?;
        }
        db::add_history(&mut tx, history).await.map_err(db_err)?;
        connectability_store::commit(tx, events, None, &self.relay)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

impl ConnectionApi {
    /// Requests a connection (C1-C11, C14, C17): judged against every rule at once, auto-
    /// approved when the upstream company says so.
    pub(super) async fn request(
        &self,
        caller: &Caller,
        r: pb::RequestConnectionRequest,
    ) -> Result<pb::Connection, Status> {
        let user = acting_user(caller)?.to_string();
        let down = Id::parse(PROJECT, "downstream_project_id", &r.downstream_project_id)?;
        let up = Id::parse(PROJECT, "upstream_project_id", &r.upstream_project_id)?;
        let features = domain::parse_features(&r.features)?;
        let request_id = parse_request_id(&r.request_id)?;
        let scope = format!("connections.RequestConnection:{user}");
        let earlier =
            requests::earlier(&mut *self.read().await?, &scope, request_id.as_deref()).await?;
        if let Some(earlier) = earlier {
            return Ok(earlier);
        }

        let f = self.facts(&user, &down, &up, &features).await?;
        let violations = domain::eligibility(
            &features,
            &f.down,
            &f.up,
            &f.down_company,
            &f.up_company,
            &f.existing,
        );
        if !violations.is_empty() {
            return Err(rules(&violations));
        }
        let mut tx = self.begin().await?;
        let settings = db::settings(&mut tx, &f.up_company.id)
            .await
            .map_err(db_err)?;
        // C11: the upstream company's setting decides.
        let auto = settings.approval_mode() != ApprovalMode::RequireReview;
        let now = self.clock.now_ms();
        let stored = Stored {
            connection: pb::Connection {
                id: Id::generate(CONNECTION).to_string(),
                upstream_project_id: up.to_string(),
                upstream_company_id: f.up_company.id.clone(),
                downstream_project_id: down.to_string(),
                downstream_company_id: f.down_company.id.clone(),
                features: features.iter().map(|f| *f as i32).collect(),
                status: if auto {
                    ConnectionStatus::Active
                } else {
                    ConnectionStatus::Pending
                } as i32,
                requested_by: user.clone(),
                request_time: Some(timestamp(now)),
                approve_time: auto.then(|| timestamp(now)),
                update_time: Some(timestamp(now)),
                version: 1,
                ..Default::default()
            },
            request_ms: now,
            approve_ms: auto.then_some(now),
        };
        if let Err(e) = db::insert(&mut tx, &stored).await {
            if db::is_unique_violation(&e) {
                // Another request for this downstream committed first (C8, C14).
                return Err(rule(
                    reason::DOWNSTREAM_ALREADY_CONNECTED,
                    "another connection of this downstream project came first",
                ));
            }
            return Err(db_err(e));
        }
        // C10, held by the database against concurrent requests.
        let mut role_violations = Vec::new();
        if db::claim_role(&mut tx, down.as_str(), ConnectionRole::Downstream)
            .await
            .map_err(db_err)?
            != ConnectionRole::Downstream
        {
            role_violations.push(Violation {
                reason: reason::PROJECT_IS_UPSTREAM,
                message: format!("`{down}` is upstream in a connection"),
            });
        }
        if db::claim_role(&mut tx, up.as_str(), ConnectionRole::Upstream)
            .await
            .map_err(db_err)?
            != ConnectionRole::Upstream
        {
            role_violations.push(Violation {
                reason: reason::PROJECT_IS_DOWNSTREAM,
                message: format!("`{up}` is downstream in a connection"),
            });
        }
        if !role_violations.is_empty() {
            tx.rollback().await.map_err(db_err)?;
            return Err(rules(&role_violations));
        }
        let c = &stored.connection;
        let mut entries = vec![HistoryEntry {
            to: ConnectionStatus::Pending,
            ..history(
                c,
                ConnectionAction::Requested,
                ConnectionStatus::Unspecified,
                &user,
                now,
                "",
                &features,
            )
        }];
        let mut out = vec![events::requested(c, &user, !auto)];
        if auto {
            entries.push(history(
                c,
                ConnectionAction::AutoApproved,
                ConnectionStatus::Pending,
                AUTO_APPROVER,
                now,
                "",
                &[],
            ));
            out.push(events::activated(c, AUTO_APPROVER, true));
        }
        db::add_history(&mut tx, &entries).await.map_err(db_err)?;
        requests::commit_once(tx, &out, &scope, request_id.as_deref(), c, &self.relay).await?;
        Ok(stored.connection)
    }
}
