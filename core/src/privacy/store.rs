//! [`PrivateStore`]: an event store that seals personal fields on append and opens them on
//! read, over a backend that stores what it is given.
//!
//! On append, each event with a non-null personal field is sealed under its data subject's
//! key: the customer of a `customer-` stream (or the `customer_id` of a case or deal; for a
//! case or deal event without one, the customer of the stream's opening event), the lead of a
//! `lead-` stream. `LeadConverted` and `CustomerMerged` link the lead (the merged customer) to
//! the customer it went into, so erasing that customer erases it too; `CustomerErased` and
//! `LeadErased` destroy the subject's keys. All of it commits in the append's transaction.
//!
//! On read, sealed fields are opened; a field whose key was destroyed reads [`ERASED`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::catalog::personal_fields;
use crate::envelope::{NewEvent, Position, RecordedEvent, StreamId, TenantId};
use crate::privacy::fields::{
    field_aad, join, may_hold_sealed, parse_sealed, plain_string, scan, seal_value, sealed_key_ids,
    splice, split, subject_of_data, unquoted,
};
use crate::privacy::vault::{Cipher, Vault};
use crate::privacy::{ERASED, PrivacyError};
use crate::store::keys::{KeyId, KeyOps, KeyTable, NewKey, customer_subject, lead_subject};
use crate::store::{
    BatchOutcome, Direction, EventStore, Scope, SharedStore, StoreError, StoredEventRef,
    StreamExpectation, StreamHead, StreamStart,
};

/// Times an append is prepared again after a key changed under it.
const KEY_ATTEMPTS: usize = 4;
/// Streams whose subject is remembered before the memory starts over.
const STREAM_SUBJECTS: usize = 100_000;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct PrivateStore {
    inner: SharedStore,
    vault: Arc<Vault>,
    subjects: Arc<Mutex<HashMap<(TenantId, StreamId), String>>>,
    /// Keep fields that arrive sealed as they are (a restore of a stored-form export).
    accept_sealed: bool,
    /// `(event type, field)` pairs this handle opens; other sealed fields read [`UNREAD`]
    /// without being decrypted. `None`: every field is opened.
    only: Option<&'static [(&'static str, &'static str)]>,
}

/// What a sealed field reads through a handle that does not open it
/// ([`PrivateStore::opening_only`]).
pub const UNREAD: &str = "[sealed]";

impl PrivateStore {
    pub fn new(inner: SharedStore, vault: Arc<Vault>) -> Self {
        PrivateStore {
            inner,
            vault,
            subjects: Arc::default(),
            accept_sealed: false,
            only: None,
        }
    }

    /// A handle that opens only these `(event type, field)` pairs; the other sealed fields
    /// read [`UNREAD`] and are never decrypted. For readers that use few personal fields
    /// (the projection runner folds names, deal names, case subjects and lost reasons, never
    /// interaction summaries), most of the opening work is saved.
    pub fn opening_only(mut self, fields: &'static [(&'static str, &'static str)]) -> Self {
        self.only = Some(fields);
        self
    }

    /// Whether this handle opens `field` of `event_type`.
    fn opens(&self, event_type: &str, field: &str) -> bool {
        self.only
            .is_none_or(|only| only.iter().any(|(t, f)| *t == event_type && *f == field))
    }

    /// Whether this handle opens any field of `event_type`.
    fn opens_any(&self, event_type: &str) -> bool {
        self.only
            .is_none_or(|only| only.iter().any(|(t, _)| *t == event_type))
    }

    /// A handle that stores fields arriving already sealed as they are, for restoring a
    /// stored-form export (with its keys); emitters' events must never use it, since a
    /// forged sealed value would not open.
    pub fn accepting_sealed(mut self) -> Self {
        self.accept_sealed = true;
        self
    }

    /// The backend, as stored (sealed fields sealed).
    pub fn inner(&self) -> &SharedStore {
        &self.inner
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// The subject of a case or deal stream, from its opening event.
    async fn stream_subject(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<Option<String>, StoreError> {
        let key = (tenant.clone(), stream.clone());
        if let Some(subject) = self.remembered().get(&key) {
            return Ok(Some(subject.clone()));
        }
        let first = self
            .inner
            .read_stream(
                tenant,
                stream,
                Direction::Forwards,
                StreamStart::Boundary,
                1,
            )
            .await?;
        let subject = first
            .first()
            .and_then(|event| subject_of_data(stream, event.data.get()));
        if let Some(subject) = &subject {
            self.remember_stream(key, subject.clone());
        }
        Ok(subject)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantId, StreamId), String>> {
        self.subjects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember_stream(&self, key: (TenantId, StreamId), subject: String) {
        let mut subjects = self.remembered();
        if subjects.len() >= STREAM_SUBJECTS {
            subjects.clear();
        }
        subjects.insert(key, subject);
    }

    /// Which subject each event's personal fields are sealed under (`None`: it has none),
    /// and the links and erasures the batch makes.
    async fn plan_subjects(
        &self,
        tenant: &TenantId,
        events: &[(StreamId, NewEvent)],
    ) -> Result<(Vec<Option<String>>, KeyOps), StoreError> {
        let mut ops = KeyOps::default();
        let mut subjects = Vec::with_capacity(events.len());
        let mut in_batch: HashMap<&StreamId, String> = HashMap::new();
        for (stream, event) in events {
            let data = event.data.get();
            match event.event_type.as_str() {
                "LeadConverted" => {
                    if let Some(customer) = member_string(data, "customer_id") {
                        ops.links.push((
                            lead_subject(stream.entity_id()),
                            customer_subject(&customer),
                        ));
                    }
                }
                "CustomerMerged" => {
                    if let Some(into) = member_string(data, "into_customer_id") {
                        let survivor = customer_subject(&into);
                        // Merging into an erased customer would erase this one with no
                        // erasure event of its own: refused (erase it first if that is meant).
                        let survivor_keys = self
                            .vault
                            .table()
                            .keys_of_subjects(tenant, std::slice::from_ref(&survivor))
                            .await?;
                        if survivor_keys.iter().any(|key| key.wrapped.is_none()) {
                            // Unless it is a replay of a merge stored before the erasure.
                            let pair = [(stream.clone(), event.event_id)];
                            if self.inner.find_events(tenant, &pair).await?.is_empty() {
                                return Err(StoreError::SubjectErased { subject: survivor });
                            }
                        }
                        ops.links
                            .push((customer_subject(stream.entity_id()), survivor));
                    }
                }
                "CustomerErased" => ops.erase.push(customer_subject(stream.entity_id())),
                "LeadErased" => ops.erase.push(lead_subject(stream.entity_id())),
                _ => {}
            }
            let subject_here = subject_of_data(stream, data);
            if let Some(subject) = &subject_here
                && !matches!(stream.category(), "customer" | "lead")
            {
                in_batch.entry(stream).or_insert_with(|| subject.clone());
            }
            if !has_personal_values(&event.event_type, data)
                || (self.accept_sealed && all_personal_sealed(&event.event_type, data))
            {
                // Nothing to seal (a restore brings its fields sealed already).
                subjects.push(None);
                continue;
            }
            let subject = match subject_here {
                Some(subject) => subject,
                None => match in_batch.get(stream) {
                    Some(subject) => subject.clone(),
                    None => self.stream_subject(tenant, stream).await?.ok_or_else(|| {
                        StoreError::InvalidInput(format!(
                            "{} in stream {stream} carries personal fields, but the stream has \
                             no opening event naming its customer to seal them under",
                            event.event_type
                        ))
                    })?,
                },
            };
            subjects.push(Some(subject));
        }
        Ok((subjects, ops))
    }

    /// Seals the personal fields of one event under `cipher`.
    fn seal_event(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        event: &NewEvent,
        key_id: &crate::store::keys::KeyId,
        cipher: &Cipher,
    ) -> Result<NewEvent, StoreError> {
        let personal = personal_fields(&event.event_type);
        let data = event.data.get();
        let seal = |name: &str, text: &str| -> Result<String, StoreError> {
            let aad = field_aad(tenant.as_str(), stream.as_str(), &event.event_id, name);
            seal_value(cipher, key_id, text, &aad).map_err(|e| StoreError::Sealing(e.to_string()))
        };
        let keep = |text: &str| {
            !holds_personal_data(text)
                || (self.accept_sealed && unquoted(text).is_some_and(super::is_sealed))
        };
        // The fast path: the values replaced in place, nothing parsed or rebuilt.
        if let Some(members) = scan(data) {
            let mut replaced = Vec::new();
            for (name, range) in members {
                let text = &data[range.clone()];
                if personal.contains(&name) && !keep(text) {
                    replaced.push((range, seal(name, text)?));
                }
            }
            let mut out = event.clone();
            out.data = RawValue::from_string(splice(data, &replaced))
                .map_err(|e| StoreError::InvalidInput(format!("event data: {e}")))?;
            return Ok(out);
        }
        let members = split(data)
            .map_err(|e| StoreError::InvalidInput(format!("event data is not an object: {e}")))?;
        let mut sealed: Vec<(&str, String)> = Vec::with_capacity(members.len());
        for (name, value) in &members {
            let text = value.get();
            if personal.contains(&name.as_ref()) && !keep(text) {
                sealed.push((name.as_ref(), seal(name, text)?));
            } else {
                sealed.push((name.as_ref(), text.to_owned()));
            }
        }
        let mut out = event.clone();
        out.data = join(sealed.iter().map(|(k, v)| (*k, v.as_str())));
        Ok(out)
    }

    async fn append_once(
        &self,
        tenant: &TenantId,
        expectations: &[StreamExpectation],
        events: &[(StreamId, NewEvent)],
        optimistic: bool,
    ) -> Result<BatchOutcome, StoreError> {
        let (subjects, mut ops) = self.plan_subjects(tenant, events).await?;
        let mut wanted: Vec<String> = subjects.iter().flatten().cloned().collect();
        wanted.sort();
        wanted.dedup();
        let (keys, new, erased) = self.keys_or_erased(tenant, &wanted, optimistic).await?;
        if !erased.is_empty() {
            self.check_only_replays(tenant, events, &subjects, &erased)
                .await?;
        }
        let new_subjects: HashSet<&str> = new.iter().map(|k| k.subject.as_str()).collect();
        for (subject, (id, _)) in &keys {
            if !new_subjects.contains(subject.as_str()) {
                ops.uses.push((subject.clone(), *id));
            }
        }
        ops.new = new;
        let mut sealed = Vec::with_capacity(events.len());
        for ((stream, event), subject) in events.iter().zip(&subjects) {
            if subject.as_ref().is_some_and(|s| erased.contains(s)) {
                // A replay of a stored event (checked above): written as erased, which the
                // store acknowledges as the duplicate it is without storing anything.
                sealed.push((stream.clone(), erased_copy(event)));
                continue;
            }
            match subject.as_ref().and_then(|s| keys.get(s)) {
                Some((id, cipher)) => sealed.push((
                    stream.clone(),
                    self.seal_event(tenant, stream, event, id, cipher)?,
                )),
                None => sealed.push((stream.clone(), event.clone())),
            }
        }
        let erases = !ops.erase.is_empty() || !ops.links.is_empty();
        let outcome = self
            .inner
            .append_batch_with_keys(tenant, expectations.to_vec(), sealed, ops)
            .await?;
        if erases {
            self.vault.forget_all();
        } else {
            self.vault.remember(tenant, &keys);
        }
        Ok(outcome)
    }

    /// The keys of `subjects`, minting what is missing; subjects found erased are returned
    /// apart instead of failing at once (their events may all be replays).
    async fn keys_or_erased(
        &self,
        tenant: &TenantId,
        subjects: &[String],
        optimistic: bool,
    ) -> Result<(HashMap<String, (KeyId, Cipher)>, Vec<NewKey>, Vec<String>), StoreError> {
        let mut wanted = subjects.to_vec();
        let mut erased = Vec::new();
        loop {
            if wanted.is_empty() {
                return Ok((HashMap::new(), Vec::new(), erased));
            }
            match self
                .vault
                .keys_for_append(tenant, &wanted, optimistic)
                .await
            {
                Ok((keys, new)) => return Ok((keys, new, erased)),
                Err(StoreError::SubjectErased { subject }) => {
                    wanted.retain(|s| *s != subject);
                    erased.push(subject);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Fails with [`StoreError::SubjectErased`] unless every event carrying personal fields
    /// of an erased subject is already stored (a replay, acknowledged as a duplicate).
    async fn check_only_replays(
        &self,
        tenant: &TenantId,
        events: &[(StreamId, NewEvent)],
        subjects: &[Option<String>],
        erased: &[String],
    ) -> Result<(), StoreError> {
        let wanted: Vec<(StreamId, uuid::Uuid, &String)> = events
            .iter()
            .zip(subjects)
            .filter_map(|((stream, event), subject)| {
                let subject = subject.as_ref().filter(|s| erased.contains(s))?;
                Some((stream.clone(), event.event_id, subject))
            })
            .collect();
        let pairs: Vec<(StreamId, uuid::Uuid)> =
            wanted.iter().map(|(s, id, _)| (s.clone(), *id)).collect();
        let stored = self.inner.find_events(tenant, &pairs).await?;
        for (stream, id, subject) in &wanted {
            if !stored
                .iter()
                .any(|s| s.stream_id == *stream && s.event_id == *id)
            {
                return Err(StoreError::SubjectErased {
                    subject: (*subject).clone(),
                });
            }
        }
        Ok(())
    }

    /// Opens the sealed fields of a batch of stored events.
    async fn open_events(
        &self,
        events: Vec<RecordedEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut wanted: HashMap<TenantId, Vec<crate::store::keys::KeyId>> = HashMap::new();
        let mut any = false;
        for event in &events {
            if personal_fields(&event.event_type).is_empty() || !may_hold_sealed(event.data.get()) {
                continue;
            }
            any = true;
            if !self.opens_any(&event.event_type) {
                continue;
            }
            let ids = match wanted.get_mut(&event.tenant) {
                Some(ids) => ids,
                None => wanted.entry(event.tenant.clone()).or_default(),
            };
            sealed_key_ids(event.data.get(), ids);
        }
        if !any {
            return Ok(events);
        }
        if !wanted.is_empty() {
            self.vault.refresh().await?;
        }
        let mut ciphers: HashMap<TenantId, HashMap<_, Option<Cipher>>> = HashMap::new();
        for (tenant, ids) in wanted {
            let found = self.vault.ciphers_by_id(&tenant, &ids).await?;
            ciphers.insert(tenant, found);
        }
        let empty = HashMap::new();
        events
            .into_iter()
            .map(|event| {
                let tenant_ciphers = ciphers.get(&event.tenant).unwrap_or(&empty);
                open_event(event, tenant_ciphers, |t, f| self.opens(t, f))
            })
            .collect()
    }
}

/// Opens one event's sealed fields with the ciphers found for its tenant.
fn open_event(
    mut event: RecordedEvent,
    tenant_ciphers: &HashMap<crate::store::keys::KeyId, Option<Cipher>>,
    opens: impl Fn(&str, &str) -> bool,
) -> Result<RecordedEvent, StoreError> {
    if personal_fields(&event.event_type).is_empty() || !may_hold_sealed(event.data.get()) {
        return Ok(event);
    }
    let opened = {
        let data = event.data.get();
        let mut replaced: Vec<(std::ops::Range<usize>, String)> = Vec::new();
        let open = |name: &str, text: &str| -> Result<Option<String>, StoreError> {
            let Some((id, sealed)) = unquoted(text).and_then(parse_sealed) else {
                return Ok(None);
            };
            if !opens(&event.event_type, name) {
                return Ok(Some(format!("\"{UNREAD}\"")));
            }
            Ok(Some(match tenant_ciphers.get(&id) {
                Some(Some(cipher)) => {
                    let aad = field_aad(
                        event.tenant.as_str(),
                        event.stream_id.as_str(),
                        &event.event_id,
                        name,
                    );
                    let plain = super::master::open(cipher, &sealed, &aad).map_err(|()| {
                        corrupt(
                            &event,
                            format!(
                                "the sealed field {name} does not open: it was altered or moved"
                            ),
                        )
                    })?;
                    String::from_utf8(plain.to_vec()).map_err(|_| {
                        corrupt(&event, format!("the sealed field {name} is not text"))
                    })?
                }
                _ => format!("\"{ERASED}\""),
            }))
        };
        match scan(data) {
            Some(members) => {
                for (name, range) in members {
                    if let Some(text) = open(name, &data[range.clone()])? {
                        replaced.push((range, text));
                    }
                }
                RawValue::from_string(splice(data, &replaced))
                    .map_err(|e| corrupt(&event, e.to_string()))?
            }
            None => {
                let members = split(data).map_err(|e| corrupt(&event, e.to_string()))?;
                let mut texts: Vec<(&str, String)> = Vec::with_capacity(members.len());
                for (name, value) in &members {
                    let text = match open(name, value.get())? {
                        Some(text) => text,
                        None => value.get().to_owned(),
                    };
                    texts.push((name.as_ref(), text));
                }
                join(texts.iter().map(|(k, v)| (*k, v.as_str())))
            }
        }
    };
    event.data = opened;
    Ok(event)
}

fn corrupt(event: &RecordedEvent, reason: String) -> StoreError {
    StoreError::Corrupt {
        position: event.position,
        reason,
    }
}

/// The event with its personal fields reading [`ERASED`].
fn erased_copy(event: &NewEvent) -> NewEvent {
    let personal = personal_fields(&event.event_type);
    let erased = format!("\"{ERASED}\"");
    let mut out = event.clone();
    if let Ok(members) = split(event.data.get()) {
        out.data = join(members.iter().map(|(name, value)| {
            if personal.contains(&name.as_ref()) && value.get() != "null" {
                (name.as_ref(), erased.as_str())
            } else {
                (name.as_ref(), value.get())
            }
        }));
    }
    out
}

/// True when the event type has personal fields and `data` gives one a non-null value.
fn has_personal_values(event_type: &str, data: &str) -> bool {
    let personal = personal_fields(event_type);
    if personal.is_empty() {
        return false;
    }
    if let Some(members) = scan(data) {
        return members.iter().any(|(name, range)| {
            personal.contains(name) && holds_personal_data(&data[range.clone()])
        });
    }
    split(data).is_ok_and(|members| {
        members.iter().any(|(name, value)| {
            personal.contains(&name.as_ref()) && holds_personal_data(value.get())
        })
    })
}

/// True when every non-null personal field of `data` is sealed already.
fn all_personal_sealed(event_type: &str, data: &str) -> bool {
    let personal = personal_fields(event_type);
    split(data).is_ok_and(|members| {
        members.iter().all(|(name, value)| {
            !personal.contains(&name.as_ref())
                || !holds_personal_data(value.get())
                || plain_string(value).is_some_and(super::is_sealed)
        })
    })
}

/// True when a personal field's JSON value holds data to seal: not null, and not the
/// [`ERASED`] marker (a log copied from a plaintext store carries it where the subject's data
/// was already removed; it names nobody, so it is stored as it is).
fn holds_personal_data(value_json: &str) -> bool {
    value_json != "null" && unquoted(value_json) != Some(ERASED)
}

/// A string member of a JSON object.
fn member_string(data: &str, name: &str) -> Option<String> {
    let members = split(data).ok()?;
    serde_json::from_str(members.get(name)?.get()).ok()
}

impl From<PrivacyError> for StoreError {
    fn from(error: PrivacyError) -> StoreError {
        match error {
            PrivacyError::Store(error) => error,
            other => StoreError::Sealing(other.to_string()),
        }
    }
}

#[async_trait]
impl EventStore for PrivateStore {
    async fn append_batch(
        &self,
        tenant: &TenantId,
        expectations: Vec<StreamExpectation>,
        events: Vec<(StreamId, NewEvent)>,
    ) -> Result<BatchOutcome, StoreError> {
        // The first attempt mints keys for subjects this process has no key of without
        // reading the key table first (most are new); the append's transaction refuses a
        // subject that has one, and the next attempt reads the table.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let optimistic = attempt == 1;
            match self
                .append_once(tenant, &expectations, &events, optimistic)
                .await
            {
                Err(StoreError::KeyChanged { subject }) if attempt < KEY_ATTEMPTS => {
                    self.vault.forget(tenant, &subject);
                }
                Err(StoreError::SubjectErased { subject }) if optimistic => {
                    self.vault.forget(tenant, &subject);
                }
                Err(StoreError::SubjectErased { subject }) => {
                    self.vault.forget(tenant, &subject);
                    return Err(StoreError::SubjectErased { subject });
                }
                other => return other,
            }
        }
    }

    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        direction: Direction,
        start: StreamStart,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self
            .inner
            .read_stream(tenant, stream, direction, start, limit)
            .await?;
        self.open_events(events).await
    }

    async fn read_all(
        &self,
        scope: &Scope,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_all(scope, after, limit).await?;
        self.open_events(events).await
    }

    async fn read_positions(
        &self,
        tenant: &TenantId,
        positions: &[Position],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_positions(tenant, positions).await?;
        self.open_events(events).await
    }

    async fn find_events(
        &self,
        tenant: &TenantId,
        pairs: &[(StreamId, uuid::Uuid)],
    ) -> Result<Vec<StoredEventRef>, StoreError> {
        self.inner.find_events(tenant, pairs).await
    }

    async fn stream_heads_of(
        &self,
        tenant: &TenantId,
        streams: &[StreamId],
    ) -> Result<Vec<StreamHead>, StoreError> {
        self.inner.stream_heads_of(tenant, streams).await
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        self.inner.head_position().await
    }

    async fn stream_heads(
        &self,
        scope: &Scope,
        after: Option<(&TenantId, &StreamId)>,
        limit: usize,
    ) -> Result<Vec<StreamHead>, StoreError> {
        self.inner.stream_heads(scope, after, limit).await
    }

    fn head_changes(&self) -> watch::Receiver<Position> {
        self.inner.head_changes()
    }

    fn key_table(&self) -> Option<Arc<dyn KeyTable>> {
        Some(Arc::clone(self.vault.table()))
    }

    fn stored(&self) -> Option<SharedStore> {
        Some(Arc::clone(&self.inner))
    }
}
