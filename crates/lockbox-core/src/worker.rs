//! A worker node: no store, no Raft. It holds a session with the managers' dispatcher (the
//! leader), which hands it its tasks and exactly the secrets they need; it runs them through
//! the same agent as a manager and reports their statuses back.
//!
//! Secret values live only in this process's memory (as [`SecretBytes`], wiped when dropped)
//! and in the tmpfs of the tasks that use them; a value the dispatcher no longer lists as
//! needed is dropped at once.
//!
//! A worker the leader promoted hears of it in a session answer: it ends its session and
//! hands the promotion to whoever started it (the node becomes a manager, `manager.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use lockbox_cluster::{Dialer, Promotion, RenewedCert, SessionRequest, SessionResponse};
use lockbox_crypto::SecretBytes;
use lockbox_types::{Network, Task, TaskStatus};

use crate::agent::{Agent, AgentHost};
use crate::error::CoreError;
use crate::executor::Executor;

/// How often a worker calls the dispatcher (its heartbeat).
pub(crate) const SESSION_PERIOD: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Assigned {
    tasks: Vec<Task>,
    secrets: HashMap<String, SecretBytes>,
    services: HashMap<String, String>,
    networks: Vec<Network>,
}

/// A running worker.
pub(crate) struct Worker {
    pub(crate) node_id: String,
    data_dir: PathBuf,
    /// Presents this node's current certificate; replaced when the dispatcher renews it.
    dialer: Mutex<Arc<Dialer>>,
    /// The serial of that certificate and the digest of the CA this node trusts.
    tls: Mutex<(String, String)>,
    managers: Mutex<Vec<String>>,
    assigned: Mutex<Assigned>,
    pending: Mutex<Vec<(String, TaskStatus)>>,
    pub(crate) agent: Arc<Agent>,
    kick: Arc<tokio::sync::Notify>,
    stopping: AtomicBool,
    audit: Option<crate::audit::AuditTrail>,
    session: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether the last call to the dispatcher succeeded (for `info`).
    connected: AtomicBool,
    /// Whether the swarm refused the last session call (403), said once in the log.
    refused: AtomicBool,
    /// Task output not yet sent to the managers (`service logs` runs there).
    output: Mutex<tokio::sync::broadcast::Receiver<crate::agent::LogLine>>,
    unsent: Mutex<Vec<crate::agent::LogLine>>,
    /// Where a promotion goes (taken when one arrives).
    promoted: Mutex<Option<tokio::sync::oneshot::Sender<Promotion>>>,
}

/// At most this many lines of output go with one session call.
const LOG_LINES_PER_CALL: usize = 2000;

impl Worker {
    /// Starts the session loop with the node certificates in `data_dir`. The receiver gets
    /// the promotion, if the leader promotes this worker; the session has ended by then.
    pub(crate) fn start(
        node_id: String,
        data_dir: &Path,
        managers: Vec<String>,
        executors: Vec<Arc<dyn Executor>>,
        audit: Option<crate::audit::AuditTrail>,
    ) -> Result<(Arc<Worker>, tokio::sync::oneshot::Receiver<Promotion>), CoreError> {
        let certs = crate::cluster::read_node_certs(data_dir).ok_or_else(|| {
            CoreError::Internal("this node's certificates are missing from DATA_DIR/certs".into())
        })?;
        let dialer = crate::cluster::dialer(&certs)?;
        let tls = (
            certs.issued.serial.clone(),
            lockbox_pki::cert_digest(&certs.ca_pem).unwrap_or_default(),
        );
        let agent = Arc::new(Agent::new(executors));
        let output = Mutex::new(agent.logs.follow());
        let (promoted, promotion) = tokio::sync::oneshot::channel();
        let w = Arc::new(Worker {
            node_id,
            data_dir: data_dir.to_owned(),
            dialer: Mutex::new(dialer),
            tls: Mutex::new(tls),
            managers: Mutex::new(managers),
            assigned: Mutex::new(Assigned::default()),
            pending: Mutex::new(Vec::new()),
            agent,
            output,
            unsent: Mutex::new(Vec::new()),
            kick: Arc::new(tokio::sync::Notify::new()),
            stopping: AtomicBool::new(false),
            audit,
            session: Mutex::new(None),
            connected: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            promoted: Mutex::new(Some(promoted)),
        });
        let weak = Arc::downgrade(&w);
        let handle = tokio::spawn(async move {
            loop {
                let Some(w) = weak.upgrade() else { break };
                if w.stopping.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(p) = w.call_dispatcher().await {
                    let to = w.promoted.lock().ok().and_then(|mut s| s.take());
                    if let Some(to) = to {
                        tracing::info!(node_id = %w.node_id, raft_id = p.raft_id, "this worker was promoted to a manager; its session ends");
                        if to.send(p).is_ok() {
                            break;
                        }
                    }
                }
                let host: Arc<dyn AgentHost> = w.clone();
                w.agent.step(&host).await;
                let kick = w.kick.clone();
                drop(w);
                let kicked = kick.notified();
                tokio::select! {
                    _ = kicked => {}
                    _ = tokio::time::sleep(SESSION_PERIOD) => {}
                }
            }
        });
        if let Ok(mut s) = w.session.lock() {
            *s = Some(handle);
        }
        Ok((w, promotion))
    }

    /// Installs what the dispatcher sent: a renewed certificate, a new CA to trust. Written
    /// to `DATA_DIR/certs` first, then used for new connections.
    fn update_certs(&self, renewed: Option<&RenewedCert>, trust_pem: Option<&str>) {
        if renewed.is_none() && trust_pem.is_none() {
            return;
        }
        let Some(mut certs) = crate::cluster::read_node_certs(&self.data_dir) else {
            tracing::warn!("this node's certificates are missing from DATA_DIR/certs");
            return;
        };
        if let Some(r) = renewed {
            match lockbox_pki::Issued::from_pem(&r.cert_pem, &r.key_pem) {
                Ok(issued) => {
                    certs.issued = issued;
                    certs.chain_pem = r.chain_pem.clone();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the dispatcher sent an unusable certificate");
                    return;
                }
            }
        }
        if let Some(pem) = trust_pem {
            certs.ca_pem = pem.to_owned();
        }
        let dialer = match crate::cluster::write_node_certs(&self.data_dir, &certs)
            .and_then(|()| crate::cluster::dialer(&certs))
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not install the renewed node certificates");
                return;
            }
        };
        if let Ok(mut slot) = self.dialer.lock() {
            *slot = dialer;
        }
        if let Ok(mut tls) = self.tls.lock() {
            *tls = (
                certs.issued.serial.clone(),
                lockbox_pki::cert_digest(&certs.ca_pem).unwrap_or_default(),
            );
        }
        if renewed.is_some() {
            tracing::info!(serial = %certs.issued.serial, not_after = %certs.issued.not_after, "renewed this node's certificate");
        }
        if trust_pem.is_some() {
            tracing::info!("this node now trusts the cluster's new root CA");
        }
    }

    /// The managers' cluster addresses, the one that answered last first.
    pub(crate) fn managers(&self) -> Vec<String> {
        self.managers.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// IDs of the secrets this worker holds now (for tests and `lockbox` diagnostics).
    pub(crate) fn held_secrets(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .assigned
            .lock()
            .map(|a| a.secrets.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The tasks assigned to this worker.
    pub(crate) fn assigned_tasks(&self) -> Vec<Task> {
        self.assigned
            .lock()
            .map(|a| a.tasks.clone())
            .unwrap_or_default()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// One session call: to the first manager that answers, trying each in turn. Returns the
    /// promotion, if the answer carries one.
    async fn call_dispatcher(&self) -> Option<Promotion> {
        let statuses: Vec<(String, TaskStatus)> =
            self.pending.lock().map(|p| p.clone()).unwrap_or_default();
        let lines: Vec<crate::agent::LogLine> = {
            let mut unsent = self
                .unsent
                .lock()
                .map(|mut u| std::mem::take(&mut *u))
                .unwrap_or_default();
            if let Ok(mut rx) = self.output.lock() {
                while unsent.len() < LOG_LINES_PER_CALL {
                    match rx.try_recv() {
                        Ok(l) => unsent.push(l),
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    }
                }
            }
            unsent
        };
        let (cert_serial, trust_digest) = self.tls.lock().map(|t| t.clone()).unwrap_or_default();
        let dialer = self.dialer.lock().ok().map(|d| d.clone())?;
        let req = SessionRequest {
            cert_serial,
            trust_digest,
            renew: false,
            node_id: self.node_id.clone(),
            statuses: statuses.clone(),
            held: self.held_secrets(),
            logs: lines
                .iter()
                .map(|l| (l.task_id.clone(), l.stream, l.time.0, l.data.clone()))
                .collect(),
        };
        let Ok(body) = lockbox_cluster::encode(&req) else {
            return None;
        };
        let managers = self.managers.lock().map(|m| m.clone()).unwrap_or_default();
        for (i, addr) in managers.iter().enumerate() {
            let answer = match dialer
                .post(addr, "/dispatcher/session", Bytes::from_owner(body.clone()))
                .await
            {
                Ok((200, answer)) => answer,
                Ok((403, answer)) => {
                    // Not a transient failure: this node was removed, or its certificate
                    // superseded. Say so (once) rather than retry silently.
                    if !self.refused.swap(true, Ordering::Relaxed) {
                        tracing::warn!(manager = %addr, answer = %String::from_utf8_lossy(&answer), "the swarm refuses this node's session");
                    }
                    continue;
                }
                Ok((status, answer)) => {
                    tracing::debug!(manager = %addr, status, answer = %String::from_utf8_lossy(&answer), "dispatcher refused the session call");
                    continue;
                }
                Err(e) => {
                    tracing::debug!(manager = %addr, error = %e, "dispatcher unreachable");
                    continue;
                }
            };
            let mut resp: SessionResponse = match lockbox_cluster::decode(&answer) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(manager = %addr, error = %e, "undecodable dispatcher answer");
                    continue;
                }
            };
            self.connected.store(true, Ordering::Relaxed);
            if let Some(p) = resp.promotion.take() {
                // Nothing else in the answer counts: this node stops being a worker.
                return Some(p);
            }
            // The statuses sent are recorded: drop them from the queue (new ones stay).
            if let Ok(mut p) = self.pending.lock() {
                let n = statuses.len().min(p.len());
                p.drain(..n);
            }
            let renewed = resp.renewed.clone();
            let trust_pem = resp.trust_pem.clone();
            self.refused.store(false, Ordering::Relaxed);
            self.apply(resp, i);
            self.update_certs(renewed.as_ref(), trust_pem.as_deref());
            return None;
        }
        // Not delivered: keep the output for the next call.
        if let Ok(mut u) = self.unsent.lock() {
            let mut lines = lines;
            lines.append(&mut u);
            *u = lines;
        }
        if self.connected.swap(false, Ordering::Relaxed) {
            tracing::warn!("no manager answers; tasks keep running, statuses are queued");
        }
        None
    }

    fn apply(&self, resp: SessionResponse, answered: usize) {
        let Ok(mut a) = self.assigned.lock() else {
            return;
        };
        // Statuses still queued are newer than the dispatcher's view.
        let pending: HashMap<String, TaskStatus> = self
            .pending
            .lock()
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default();
        a.tasks = resp
            .tasks
            .into_iter()
            .map(|mut t| {
                if let Some(st) = pending.get(&t.id) {
                    t.status = st.clone();
                }
                t
            })
            .collect();
        a.secrets.retain(|id, _| resp.needed.contains(id));
        for (id, value) in resp.values {
            a.secrets.insert(id, value);
        }
        a.services = resp.services.into_iter().collect();
        a.networks = resp.networks;
        if !resp.managers.is_empty()
            && let Ok(mut m) = self.managers.lock()
        {
            // The manager that answered first next time, then the others.
            let mut list = resp.managers;
            if let Some(addr) = m.get(answered).cloned()
                && let Some(pos) = list.iter().position(|x| *x == addr)
            {
                list.swap(0, pos);
            }
            *m = list;
        }
    }

    /// Stops the session and every task.
    pub(crate) async fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.kick.notify_one();
        let handle = self.session.lock().ok().and_then(|mut s| s.take());
        if let Some(h) = handle {
            let _ = h.await;
        }
        self.agent.stop_all(Duration::from_secs(10)).await;
        if let Ok(mut a) = self.assigned.lock() {
            a.secrets.clear();
        }
    }
}

impl AgentHost for Worker {
    fn tasks(&self) -> Vec<Task> {
        self.assigned_tasks()
    }
    fn secret(&self, id: &str) -> Option<SecretBytes> {
        self.assigned
            .lock()
            .ok()
            .and_then(|a| a.secrets.get(id).cloned())
    }
    fn service_name(&self, id: &str) -> String {
        self.assigned
            .lock()
            .ok()
            .and_then(|a| a.services.get(id).cloned())
            .unwrap_or_default()
    }
    fn network(&self, key: &str) -> Option<Network> {
        self.assigned.lock().ok().and_then(|a| {
            a.networks
                .iter()
                .find(|n| n.id == key)
                .or_else(|| a.networks.iter().find(|n| n.name == key))
                .cloned()
        })
    }
    fn report(&self, id: String, status: TaskStatus) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            // Seen at once by the agent here; sent with the next session call.
            if let Ok(mut a) = self.assigned.lock()
                && let Some(t) = a.tasks.iter_mut().find(|t| t.id == id)
            {
                t.status = status.clone();
            }
            if let Ok(mut p) = self.pending.lock() {
                p.push((id, status));
            }
            self.kick.notify_one();
        })
    }
    fn audit(&self) -> Option<&crate::audit::AuditTrail> {
        self.audit.as_ref()
    }
    fn fingerprint(&self, _value: &SecretBytes) -> Option<String> {
        // The fingerprint key stays with the managers; the dispatcher's record has it.
        None
    }
    fn kick(&self) {
        self.kick.notify_one();
    }
}
