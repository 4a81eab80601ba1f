//! The audit trail of this node: every API request, every delivery of a secret to a task,
//! every lock, unlock, key rotation and access-model change. Records go to an append-only,
//! hash-chained log (`lockbox-audit`) and are durable before the caller is answered: when a
//! record cannot be written the operation fails. No secret value is ever recorded; a keyed
//! fingerprint (HMAC-SHA256 with the cluster's audit key) lets an investigator check whether
//! a given value was the one created or delivered.

use std::collections::BTreeMap;

use lockbox_crypto::SecretBytes;

use std::path::{Path, PathBuf};

use crate::CoreError;
use crate::manager::{Active, Manager};

/// The node's audit log.
#[derive(Debug, Clone)]
pub(crate) struct AuditTrail {
    log: lockbox_audit::AuditLog,
    dir: PathBuf,
}

impl AuditTrail {
    pub(crate) fn open(
        dir: &Path,
        segment_bytes: u64,
        max_segments: Option<usize>,
    ) -> Result<AuditTrail, CoreError> {
        let mut options = lockbox_audit::Options::default();
        if segment_bytes > 0 {
            options.max_segment_bytes = segment_bytes;
        }
        options.max_segments = max_segments;
        let log = lockbox_audit::AuditLog::open(dir, options)
            .map_err(|e| CoreError::Internal(format!("audit trail {}: {e}", dir.display())))?;
        Ok(AuditTrail {
            log,
            dir: dir.to_owned(),
        })
    }

    pub(crate) async fn record(&self, e: AuditEntry) -> Result<(), CoreError> {
        let record = lockbox_audit::Record {
            time: time::OffsetDateTime::now_utc(),
            actor: e.actor,
            source: e.source,
            action: e.action,
            method: e.method,
            path: e.path,
            objects: e
                .objects
                .into_iter()
                .map(|o| lockbox_audit::ObjectRef {
                    kind: o.kind,
                    id: o.id,
                    name: o.name,
                })
                .collect(),
            outcome: lockbox_audit::Outcome {
                status: e.status,
                error: e.error,
            },
            details: e.details,
        };
        self.log.append(record).await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "audit record could not be written");
            CoreError::Internal(format!("the audit trail could not be written: {e}"))
        })
    }

    pub(crate) async fn close(&self) {
        self.log.close().await;
    }
}

/// What `audit verify` found.
pub type AuditReport = lockbox_audit::VerifyReport;
/// Which records `audit ls` wants.
pub type AuditFilter = lockbox_audit::Filter;

/// An object a record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditObject {
    /// `secret`, `service`, `task`, `node`, `user`, `role`, `grant`, `network`, `swarm`.
    pub kind: String,
    /// ID, when known.
    pub id: String,
    /// Name, when known (or the key as the caller gave it).
    pub name: String,
}

impl AuditObject {
    /// An object by kind, ID and name.
    pub fn new(kind: &str, id: impl Into<String>, name: impl Into<String>) -> AuditObject {
        AuditObject {
            kind: kind.to_owned(),
            id: id.into(),
            name: name.into(),
        }
    }
}

/// One record, before the log numbers and chains it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who.
    pub actor: String,
    /// From where.
    pub source: String,
    /// What: `secret.create`, `secret.deliver`, `swarm.unlock`, ...
    pub action: String,
    /// HTTP method, for requests.
    pub method: Option<String>,
    /// HTTP path, for requests.
    pub path: Option<String>,
    /// On what.
    pub objects: Vec<AuditObject>,
    /// HTTP status (0 for internal events).
    pub status: u16,
    /// The error, if it failed.
    pub error: Option<String>,
    /// Extra facts (`target`, `node`, `value_hmac`, ...). Never a value.
    pub details: BTreeMap<String, String>,
}

impl Manager {
    /// The audit trail's directory, when auditing is on.
    pub fn audit_dir(&self) -> Option<&Path> {
        self.audit_log().map(|t| t.dir.as_path())
    }

    /// The last record this daemon wrote: its seq and hash (hex), to verify a copy later.
    pub fn audit_head(&self) -> Option<(u64, String)> {
        self.audit_log().map(|t| {
            let (seq, hash) = t.log.head();
            (seq, hash.iter().map(|b| format!("{b:02x}")).collect())
        })
    }

    /// Verifies the audit trail's files, also against the head this process wrote last (so a
    /// cut-off tail is found too).
    pub fn verify_audit(&self) -> Result<AuditReport, CoreError> {
        let t = self
            .audit_log()
            .ok_or_else(|| CoreError::Conflict("auditing is off on this node".into()))?;
        lockbox_audit::verify(&t.dir, Some(t.log.head()))
            .map_err(|e| CoreError::Internal(format!("audit verify: {e}")))
    }

    /// The stored lines that match `filter`, in order (blocking file reads: call from a
    /// blocking context).
    pub fn audit_export(
        &self,
        filter: &AuditFilter,
    ) -> Result<impl Iterator<Item = Result<String, String>> + use<>, CoreError> {
        let t = self
            .audit_log()
            .ok_or_else(|| CoreError::Conflict("auditing is off on this node".into()))?;
        let it = lockbox_audit::export(&t.dir, filter)
            .map_err(|e| CoreError::Internal(format!("audit: {e}")))?;
        Ok(it.map(|r| r.map_err(|e| e.to_string())))
    }

    /// Whether `value` is the one whose fingerprint record `seq` carries (`value_hmac`).
    pub async fn audit_check_value(
        &self,
        seq: u64,
        value: &SecretBytes,
    ) -> Result<bool, CoreError> {
        let t = self
            .audit_log()
            .ok_or_else(|| CoreError::Conflict("auditing is off on this node".into()))?;
        let mut f = AuditFilter::default();
        f.from_seq = Some(seq);
        f.limit = Some(1);
        let rec = lockbox_audit::query(&t.dir, &f)
            .map_err(|e| CoreError::Internal(format!("audit: {e}")))?
            .next()
            .transpose()
            .map_err(|e| CoreError::Internal(format!("audit: {e}")))?
            .filter(|r| r.seq == seq)
            .ok_or_else(|| CoreError::NotFound(format!("audit record {seq} not found")))?;
        let Some(fp) = rec.record.details.get("value_hmac") else {
            return Err(CoreError::InvalidParameter(format!(
                "audit record {seq} carries no value fingerprint"
            )));
        };
        let a = self.active().await?;
        let key = a
            .store
            .read(|st| st.keys.as_ref().map(|k| k.audit_key.clone()))
            .ok_or_else(|| CoreError::Internal("the cluster has no audit key".into()))?;
        let key: [u8; 32] = key
            .expose()
            .try_into()
            .map_err(|_| CoreError::Internal("the audit key is malformed".into()))?;
        Ok(lockbox_audit::check_value_hmac(&key, value.expose(), fp))
    }

    /// Records `entry` durably. Without an audit trail configured this does nothing.
    pub async fn audit(&self, entry: AuditEntry) -> Result<(), CoreError> {
        match self.audit_log() {
            Some(log) => log.record(entry).await,
            None => Ok(()),
        }
    }

    /// The fingerprint of a value under the cluster's audit key, for a record's
    /// `value_hmac`; `None` before the store is open.
    pub async fn value_fingerprint(&self, value: &SecretBytes) -> Option<String> {
        let a = self.active().await.ok()?;
        a.value_fingerprint(value)
    }
}

impl Active {
    pub(crate) fn value_fingerprint(&self, value: &SecretBytes) -> Option<String> {
        let key = self
            .store
            .read(|st| st.keys.as_ref().map(|k| k.audit_key.clone()))?;
        let key: [u8; 32] = key.expose().try_into().ok()?;
        Some(lockbox_audit::value_hmac(&key, value.expose()))
    }
}
