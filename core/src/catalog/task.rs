//! Task events: the `task-<task_id>` stream of a follow-up with an owner, a due time and a
//! subject (a customer, an opportunity, a case or a lead).

use chrono::{DateTime, Utc};

use crate::catalog::fields::{DataWriter, EventData, FieldReader};
use crate::catalog::values::TaskSubjectKind;
use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;

/// A task was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCreated {
    pub task_id: EntityId,
    /// `customer`, `opportunity`, `case` or `lead`.
    pub subject_type: TaskSubjectKind,
    /// The id of the subject, in its own category.
    pub subject_id: EntityId,
    /// The user who is to do it.
    pub owner: EntityId,
    /// When it is due (RFC 3339, stored in UTC).
    pub due_at: DateTime<Utc>,
    /// A business label such as `Send the renewal quote`, not personal data.
    pub title: String,
}

impl EventData for TaskCreated {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("task_id"),
        FieldInfo::required("subject_type"),
        FieldInfo::required("subject_id"),
        FieldInfo::required("owner"),
        FieldInfo::required("due_at"),
        FieldInfo::required("title"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(TaskCreated {
            task_id: fields.required("task_id")?,
            subject_type: fields.required("subject_type")?,
            subject_id: fields.required("subject_id")?,
            owner: fields.required("owner")?,
            due_at: fields.timestamp("due_at")?,
            title: fields.text("title")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("task_id", &self.task_id);
        data.string("subject_type", self.subject_type.as_str());
        data.id("subject_id", &self.subject_id);
        data.id("owner", &self.owner);
        data.timestamp("due_at", self.due_at);
        data.string("title", &self.title);
    }

    fn entity_id(&self) -> &EntityId {
        &self.task_id
    }
}

/// The task's due time moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRescheduled {
    pub task_id: EntityId,
    pub due_at: DateTime<Utc>,
}

impl EventData for TaskRescheduled {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("task_id"),
        FieldInfo::required("due_at"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(TaskRescheduled {
            task_id: fields.required("task_id")?,
            due_at: fields.timestamp("due_at")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("task_id", &self.task_id);
        data.timestamp("due_at", self.due_at);
    }

    fn entity_id(&self) -> &EntityId {
        &self.task_id
    }
}

/// The task was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCompleted {
    pub task_id: EntityId,
}

impl EventData for TaskCompleted {
    const FIELDS: &'static [FieldInfo] = &[FieldInfo::required("task_id")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(TaskCompleted {
            task_id: fields.required("task_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("task_id", &self.task_id);
    }

    fn entity_id(&self) -> &EntityId {
        &self.task_id
    }
}

/// The task will not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCancelled {
    pub task_id: EntityId,
}

impl EventData for TaskCancelled {
    const FIELDS: &'static [FieldInfo] = &[FieldInfo::required("task_id")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(TaskCancelled {
            task_id: fields.required("task_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("task_id", &self.task_id);
    }

    fn entity_id(&self) -> &EntityId {
        &self.task_id
    }
}
