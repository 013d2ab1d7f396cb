//! The tasks read model: one row per task (subject, owner, due time, status, title), folded
//! from its `task-<id>` stream, and the queries over it: the task list (by owner, status,
//! subject, due before a time, overdue at the request's time; in pages by id or by due
//! time) and the open tasks of one subject (the 360 view's and an opportunity's).
//!
//! Whether a task is overdue depends on the time it is asked at: the rows keep the due time,
//! the query compares it with the time it is given (never the clock here).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::catalog::values::TaskSubjectKind;
use crm_core::envelope::Position;
use crm_core::ids::EntityId;
use serde::{Deserialize, Serialize};

use crate::bookkeeping::from_position;
use crate::db::{Col, Query, ReadDb, ReadTx, Rows, SqlValue};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, TableDef, Tables};
use crate::rows::{DocRow, EntityDoc, apply_entity_docs, decode_doc};

pub const TABLE: &str = "rm_tasks";
pub const NAME: &str = "tasks";

const TABLES: &[TableDef] = &[TableDef {
    name: TABLE,
    create: "CREATE TABLE {t} (
        tenant TEXTKEY NOT NULL,
        id TEXTKEY NOT NULL,
        customer_id TEXTKEY,
        subject_type TEXT,
        subject_id TEXTKEY,
        owner TEXTKEY,
        due_at BIGINT,
        status TEXT NOT NULL,
        last_position BIGINT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    )",
    indexes: &[
        "CREATE INDEX {t}_subject ON {t} (tenant, subject_type, subject_id, status)",
        "CREATE INDEX {t}_owner ON {t} (tenant, owner, due_at, id)",
        "CREATE INDEX {t}_due ON {t} (tenant, due_at, id)",
    ],
}];

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Events of the task were seen but not its creation (never accepted by the ingest).
    #[default]
    Unknown,
    Open,
    Completed,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Unknown => "unknown",
            TaskStatus::Open => "open",
            TaskStatus::Completed => "completed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// One task as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    pub task_id: Option<EntityId>,
    #[schema(value_type = Option<String>)]
    pub subject_type: Option<TaskSubjectKind>,
    pub subject_id: Option<EntityId>,
    pub owner: Option<EntityId>,
    pub due_at: Option<DateTime<Utc>>,
    pub title: Option<String>,
    pub status: TaskStatus,
    /// Business time of the creation.
    pub created_at: Option<DateTime<Utc>>,
    /// Business time of the completion or cancellation.
    pub closed_at: Option<DateTime<Utc>>,
    /// How many times the due time moved.
    pub reschedules: u32,
    #[schema(value_type = u64)]
    pub last_position: Position,
}

impl Task {
    /// Folds one event of the task's stream. Closed tasks stay closed (the ingest refuses
    /// anything after, this keeps a log written by other means deterministic).
    pub fn apply(&mut self, event: &ProjectedEvent) {
        let at = event.occurred_at;
        let closed = matches!(self.status, TaskStatus::Completed | TaskStatus::Cancelled);
        match &event.event {
            DomainEvent::TaskCreated(e) if self.created_at.is_none() => {
                self.task_id = Some(e.task_id.clone());
                self.subject_type = Some(e.subject_type);
                self.subject_id = Some(e.subject_id.clone());
                self.owner = Some(e.owner.clone());
                self.due_at = Some(e.due_at);
                self.title = Some(e.title.clone());
                self.created_at = Some(at);
                if self.status == TaskStatus::Unknown {
                    self.status = TaskStatus::Open;
                }
            }
            DomainEvent::TaskRescheduled(e) if !closed => {
                self.task_id.get_or_insert_with(|| e.task_id.clone());
                self.due_at = Some(e.due_at);
                self.reschedules += 1;
            }
            DomainEvent::TaskCompleted(e) if !closed => {
                self.task_id.get_or_insert_with(|| e.task_id.clone());
                self.status = TaskStatus::Completed;
                self.closed_at = Some(at);
            }
            DomainEvent::TaskCancelled(e) if !closed => {
                self.task_id.get_or_insert_with(|| e.task_id.clone());
                self.status = TaskStatus::Cancelled;
                self.closed_at = Some(at);
            }
            _ => {}
        }
        self.last_position = self.last_position.max(event.position);
    }

    /// Open and due before `now`.
    pub fn overdue_at(&self, now: DateTime<Utc>) -> bool {
        self.status == TaskStatus::Open && self.due_at.is_some_and(|due| due < now)
    }
}

impl DocRow for Task {
    const COLUMNS: &'static [&'static str] = &[
        "customer_id",
        "subject_type",
        "subject_id",
        "owner",
        "due_at",
        "status",
        "last_position",
    ];

    fn column_values(&self) -> Vec<SqlValue> {
        let customer = (self.subject_type == Some(TaskSubjectKind::Customer))
            .then(|| self.subject_id.as_ref().map(|s| s.as_str()))
            .flatten();
        vec![
            SqlValue::opt_text(customer),
            SqlValue::opt_text(self.subject_type.map(|s| s.as_str())),
            SqlValue::opt_text(self.subject_id.as_ref().map(|s| s.as_str())),
            SqlValue::opt_text(self.owner.as_ref().map(|o| o.as_str())),
            SqlValue::opt_int(self.due_at.map(|t| t.timestamp_micros())),
            self.status.as_str().into(),
            from_position(self.last_position),
        ]
    }
}

impl EntityDoc for Task {
    const CATEGORY: &'static str = "task";

    fn fold(&mut self, event: &ProjectedEvent) {
        self.apply(event);
    }

    /// Tasks hold no personal data: no customer's erasure clears them (the `customer_id`
    /// column, the subject when it is a customer, is what the shared erasure step reads).
    fn customer_id(&self) -> Option<&EntityId> {
        None
    }

    fn erase_personal(&mut self) {}
}

/// The tasks projection.
#[derive(Debug, Default)]
pub struct TasksProjection;

#[async_trait::async_trait]
impl Projection for TasksProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[Arc<ProjectedEvent>],
    ) -> Result<(), ProjectionError> {
        apply_entity_docs::<Task>(tx, tables.get(TABLE), events).await
    }
}

/// A task as listed: the stored task and whether it is overdue at the time asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TaskLine {
    #[serde(flatten)]
    pub task: Task,
    /// Open and due before the time of the request.
    pub overdue: bool,
}

/// The order of the task list and its pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaskOrder {
    /// By task id; the cursor is the last id.
    #[default]
    Id,
    /// By due time, then id; the cursor is the last (due time, id).
    Due,
}

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCursor {
    Id(String),
    Due(DateTime<Utc>, String),
}

/// What `GET /v1/tasks` asks for.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub owner: Option<String>,
    pub status: Option<TaskStatus>,
    pub subject: Option<(TaskSubjectKind, String)>,
    /// Due strictly before this time.
    pub due_before: Option<DateTime<Utc>>,
    /// `Some(true)`: only tasks open and due before `now`; `Some(false)`: only the others.
    pub overdue: Option<bool>,
    pub order: TaskOrder,
    pub after: Option<TaskCursor>,
    pub limit: usize,
}

/// Tasks of `tenant` matching `filter`, in its order; `now` decides what is overdue.
pub async fn list(
    db: &ReadDb,
    tenant: &str,
    filter: &TaskFilter,
    now: DateTime<Utc>,
) -> Result<Vec<TaskLine>, ProjectionError> {
    let mut sql = format!("SELECT id, doc FROM {TABLE} WHERE tenant = ?");
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    if let Some(owner) = &filter.owner {
        sql.push_str(" AND owner = ?");
        args.push(owner.as_str().into());
    }
    if let Some(status) = filter.status {
        sql.push_str(" AND status = ?");
        args.push(status.as_str().into());
    }
    if let Some((kind, id)) = &filter.subject {
        sql.push_str(" AND subject_type = ? AND subject_id = ?");
        args.push(kind.as_str().into());
        args.push(id.as_str().into());
    }
    if let Some(before) = filter.due_before {
        sql.push_str(" AND due_at < ?");
        args.push(SqlValue::Int(before.timestamp_micros()));
    }
    match filter.overdue {
        Some(true) => {
            sql.push_str(" AND status = 'open' AND due_at < ?");
            args.push(SqlValue::Int(now.timestamp_micros()));
        }
        Some(false) => {
            sql.push_str(" AND NOT (status = 'open' AND due_at < ?)");
            args.push(SqlValue::Int(now.timestamp_micros()));
        }
        None => {}
    }
    match &filter.after {
        Some(TaskCursor::Id(id)) => {
            sql.push_str(" AND id > ?");
            args.push(id.as_str().into());
        }
        Some(TaskCursor::Due(due, id)) => {
            sql.push_str(" AND (due_at > ? OR (due_at = ? AND id > ?))");
            args.push(SqlValue::Int(due.timestamp_micros()));
            args.push(SqlValue::Int(due.timestamp_micros()));
            args.push(id.as_str().into());
        }
        None => {}
    }
    sql.push_str(match filter.order {
        TaskOrder::Id => " ORDER BY id LIMIT ?",
        TaskOrder::Due => " ORDER BY due_at, id LIMIT ?",
    });
    args.push(SqlValue::Int(
        i64::try_from(filter.limit).unwrap_or(i64::MAX),
    ));
    lines(db, tenant, &sql, args, now).await
}

/// Most open tasks shown on a 360 view or an opportunity, soonest due first.
pub const OPEN_TASKS_SHOWN: usize = 100;

/// The open tasks whose subject is `(kind, id)`, soonest due first (at most
/// [`OPEN_TASKS_SHOWN`]).
pub async fn open_for(
    db: &ReadDb,
    tenant: &str,
    kind: TaskSubjectKind,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<TaskLine>, ProjectionError> {
    let query = open_for_query(tenant, kind, id);
    lines_from(
        tenant,
        db.fetch(&query.sql, query.args, &query.cols).await?,
        now,
    )
}

/// The statement of [`open_for`], to run alone or together with others
/// (`ReadDb::fetch_together`); [`lines_from`] reads its rows.
pub fn open_for_query(tenant: &str, kind: TaskSubjectKind, id: &str) -> Query {
    Query::new(
        format!(
            "SELECT id, doc FROM {TABLE} WHERE tenant = ? AND subject_type = ? AND \
             subject_id = ? AND status = 'open' ORDER BY due_at, id LIMIT ?"
        ),
        vec![
            tenant.into(),
            kind.as_str().into(),
            id.into(),
            SqlValue::Int(OPEN_TASKS_SHOWN as i64),
        ],
        &[Col::Text, Col::Text],
    )
}

async fn lines(
    db: &ReadDb,
    tenant: &str,
    sql: &str,
    args: Vec<SqlValue>,
    now: DateTime<Utc>,
) -> Result<Vec<TaskLine>, ProjectionError> {
    lines_from(
        tenant,
        db.fetch(sql, args, &[Col::Text, Col::Text]).await?,
        now,
    )
}

/// The task lines (`id`, `doc` rows) of a task query, overdue as of `now`.
pub fn lines_from(
    tenant: &str,
    rows: Rows,
    now: DateTime<Utc>,
) -> Result<Vec<TaskLine>, ProjectionError> {
    rows.into_iter()
        .map(|row| {
            let id = row[0].as_text().unwrap_or_default();
            let task: Task = decode_doc(TABLE, tenant, id, row[1].as_text().unwrap_or_default())?;
            Ok(TaskLine {
                overdue: task.overdue_at(now),
                task,
            })
        })
        .collect()
}

/// Most tasks of one subject folded for a past view; a subject with more has its oldest
/// [`PAST_TASKS_READ`] folded (by id).
pub const PAST_TASKS_READ: usize = 1_000;

/// The open tasks of one subject as they stood at `cut`: each task of the subject (the
/// subject never changes after creation) is folded from its own stream, cut there, and kept
/// if it was open then; soonest due first (at most [`OPEN_TASKS_SHOWN`]), `overdue` at `at`.
pub async fn open_for_at(
    store: &dyn crm_core::store::EventStore,
    db: &ReadDb,
    tenant: &crm_core::envelope::TenantId,
    kind: TaskSubjectKind,
    id: &str,
    cut: crate::asof::Cut,
    at: DateTime<Utc>,
) -> Result<Vec<TaskLine>, ProjectionError> {
    use crm_core::envelope::StreamId;
    use crm_core::store::{Direction, StreamStart};

    let rows = db
        .fetch(
            &format!(
                "SELECT id FROM {TABLE} WHERE tenant = ? AND subject_type = ? AND subject_id = ? \
                 ORDER BY id LIMIT ?"
            ),
            vec![
                tenant.as_str().into(),
                kind.as_str().into(),
                id.into(),
                SqlValue::Int(PAST_TASKS_READ as i64),
            ],
            &[Col::Text],
        )
        .await?;
    let mut open = Vec::new();
    for row in rows {
        let Some(task_id) = row[0].as_text() else {
            continue;
        };
        let Ok(stream) = StreamId::parse(&format!("task-{task_id}")) else {
            continue;
        };
        let mut task = Task::default();
        let mut from = 0;
        loop {
            let events = store
                .read_stream(
                    tenant,
                    &stream,
                    Direction::Forwards,
                    StreamStart::Revision(from),
                    1_000,
                )
                .await?;
            let Some(last) = events.last() else { break };
            from = last.revision + 1;
            for recorded in events {
                if cut.contains(&recorded) {
                    task.apply(&ProjectedEvent::decode(recorded)?);
                }
            }
        }
        if task.status == TaskStatus::Open {
            open.push(TaskLine {
                overdue: task.overdue_at(at),
                task,
            });
        }
    }
    open.sort_by(|a, b| (a.task.due_at, &a.task.task_id).cmp(&(b.task.due_at, &b.task.task_id)));
    open.truncate(OPEN_TASKS_SHOWN);
    Ok(open)
}
