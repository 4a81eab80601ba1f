//! Who is asking, and what they may do.
//!
//! A request's [`Identity`] comes from its connection: on the unix socket the peer's uid and
//! groups (SO_PEERCRED; uid 0 is the bootstrap admin), over TLS the client certificate issued
//! by the cluster CA (its CN is the user). Grants bind users and groups to roles on scopes;
//! secret permissions are narrowed by the scope, the others come only from grants on `all`.
//! The model lives in the replicated state, so every manager decides alike.

use std::collections::{BTreeMap, BTreeSet};

use lockbox_types::{
    AccessChange, AccessModel, Command, Grant, Meta, Outcome, Role, Scope, Secret, Subject, User,
    expand_permissions, is_scoped_permission, valid_principal,
};

use crate::CoreError;
use crate::manager::{Active, Manager, now};

/// How a caller was recognized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// uid 0 on the unix socket, or the daemon itself: every permission.
    Root,
    /// A lockbox user.
    User,
    /// Someone lockbox has no user for (an OS uid, or a certificate of a removed user): only
    /// what grants to its OS groups give.
    Unknown,
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name: a lockbox user, `root`, or `uid:N` for an unknown OS user.
    pub user: String,
    /// lockbox groups and, on the unix socket, the peer's OS groups.
    pub groups: Vec<String>,
    /// Where the request came from, for the audit trail.
    pub source: String,
    /// How it was recognized.
    pub kind: IdentityKind,
}

impl Identity {
    /// The daemon itself (internal work) or an in-process caller.
    pub fn internal(source: &str) -> Identity {
        Identity {
            user: "root".into(),
            groups: Vec::new(),
            source: source.into(),
            kind: IdentityKind::Root,
        }
    }

    /// Whether this is the bootstrap admin.
    pub fn is_root(&self) -> bool {
        self.kind == IdentityKind::Root
    }
}

/// A unix-socket peer (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixPeer {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Process ID, when the kernel gave one.
    pub pid: Option<i32>,
}

/// A TLS peer whose certificate the handshake verified against the cluster CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPeer {
    /// Subject CN: the user.
    pub common_name: String,
    /// Subject OU.
    pub org_unit: String,
    /// Serial, lowercase hex.
    pub serial: String,
    /// Remote address.
    pub addr: String,
}

/// What an identity may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Everything.
    pub root: bool,
    /// Permissions on everything (from grants on `all`).
    pub all: BTreeSet<String>,
    /// Secret permissions on scopes.
    pub scoped: Vec<(Scope, BTreeSet<String>)>,
}

impl Permissions {
    fn of(model: &AccessModel, id: &Identity) -> Permissions {
        if id.is_root() {
            return Permissions {
                root: true,
                ..Permissions::default()
            };
        }
        let mut p = Permissions::default();
        for g in model.grants.values() {
            let applies = match &g.subject {
                Subject::User(u) => id.kind == IdentityKind::User && *u == id.user,
                Subject::Group(name) => id.groups.iter().any(|x| x == name),
            };
            if !applies {
                continue;
            }
            let Some(perms) = model.role_permissions(&g.role) else {
                continue;
            };
            match &g.scope {
                Scope::All => p.all.extend(perms),
                scope => {
                    let secret_perms: BTreeSet<String> = perms
                        .into_iter()
                        .filter(|x| is_scoped_permission(x))
                        .collect();
                    if !secret_perms.is_empty() {
                        p.scoped.push((scope.clone(), secret_perms));
                    }
                }
            }
        }
        p
    }

    /// A cluster-wide permission.
    pub fn has(&self, perm: &str) -> bool {
        self.root || self.all.contains(perm)
    }

    /// A permission on at least some objects.
    pub fn has_any(&self, perm: &str) -> bool {
        self.has(perm) || self.scoped.iter().any(|(_, ps)| ps.contains(perm))
    }

    /// A secret permission on a secret with this name and these labels.
    pub fn covers(&self, perm: &str, name: &str, labels: &lockbox_types::Labels) -> bool {
        self.has(perm)
            || self
                .scoped
                .iter()
                .any(|(s, ps)| ps.contains(perm) && s.covers(name, labels))
    }

    /// Permission name → scopes, for `whoami`.
    pub fn by_scope(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if self.root {
            out.insert(
                "all".into(),
                lockbox_types::PERMISSIONS
                    .iter()
                    .map(|p| (*p).to_owned())
                    .collect(),
            );
            return out;
        }
        if !self.all.is_empty() {
            out.insert("all".into(), self.all.iter().cloned().collect());
        }
        for (s, ps) in &self.scoped {
            out.entry(s.to_string())
                .or_default()
                .extend(ps.iter().cloned());
        }
        out
    }
}

/// The denial text: names the caller, the permission and the object as the caller named it.
pub(crate) fn denied(id: &Identity, perm: &str, object: Option<&str>) -> CoreError {
    match object {
        Some(o) => CoreError::PermissionDenied(format!(
            "permission denied: {} lacks {perm} on {o}",
            id.user
        )),
        None => CoreError::PermissionDenied(format!("permission denied: {} lacks {perm}", id.user)),
    }
}

/// [`os_groups`], remembered for a few seconds per (uid, gid, pid): a client sends many
/// requests, and each would otherwise read `/proc` and `/etc/group`.
fn os_groups_cached(peer: &UnixPeer) -> Vec<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};
    type Cache = HashMap<(u32, u32, Option<i32>), (Instant, Vec<String>)>;
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    const TTL: Duration = Duration::from_secs(5);
    let key = (peer.uid, peer.gid, peer.pid);
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(c) = cache.lock()
        && let Some((at, groups)) = c.get(&key)
        && at.elapsed() < TTL
    {
        return groups.clone();
    }
    let groups = os_groups(peer);
    if let Ok(mut c) = cache.lock() {
        if c.len() >= 1024 {
            c.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        if c.len() < 1024 {
            c.insert(key, (Instant::now(), groups.clone()));
        }
    }
    groups
}

/// OS group names of a unix peer: its primary gid and, when its pid is known, the
/// supplementary groups from `/proc/<pid>/status`, named by `/etc/group`.
fn os_groups(peer: &UnixPeer) -> Vec<String> {
    let mut gids = vec![peer.gid];
    if let Some(pid) = peer.pid
        && let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
        && let Some(line) = status.lines().find(|l| l.starts_with("Groups:"))
    {
        gids.extend(
            line["Groups:".len()..]
                .split_whitespace()
                .filter_map(|g| g.parse::<u32>().ok()),
        );
    }
    let table = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let mut names: Vec<String> = table
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid: u32 = f.nth(1)?.parse().ok()?;
            gids.contains(&gid).then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

impl Active {
    /// Creates the cluster CA and the audit key when the state has none yet.
    pub(crate) async fn ensure_keys(&self) -> Result<(), CoreError> {
        self.ensure_keys_with(None).await
    }

    /// [`Active::ensure_keys`] with the CA `swarm init` made (its digest is in the join
    /// tokens), or a new one.
    pub(crate) async fn ensure_keys_with(
        &self,
        ca: Option<lockbox_pki::Ca>,
    ) -> Result<(), CoreError> {
        if self.store.read(|st| st.keys.is_some()) {
            return Ok(());
        }
        let ca = match ca {
            Some(ca) => ca,
            None => {
                let name = self
                    .store
                    .read(|st| st.cluster.as_ref().map(|c| c.id.clone()))
                    .unwrap_or_default();
                lockbox_pki::Ca::generate(&name)
                    .map_err(|e| CoreError::Internal(format!("creating the cluster CA: {e}")))?
            }
        };
        let mut audit_key = vec![0u8; 32];
        getrandom::fill(&mut audit_key).map_err(|e| CoreError::Internal(e.to_string()))?;
        let keys = lockbox_types::ClusterKeys {
            ca_cert_pem: ca.cert_pem().to_owned(),
            ca_key_pem: lockbox_crypto::SecretBytes::new(ca.key_pem().as_bytes().to_vec()),
            audit_key: lockbox_crypto::SecretBytes::new(audit_key),
        };
        match self
            .store
            .propose(Command::SetClusterKeys {
                keys: Box::new(keys),
            })
            .await?
        {
            Outcome::Applied { .. } | Outcome::Rejected(_) => Ok(()),
        }
    }

    pub(crate) fn ca(&self) -> Result<lockbox_pki::Ca, CoreError> {
        let (cert, key) = self
            .store
            .read(|st| {
                st.keys
                    .as_ref()
                    .map(|k| (k.ca_cert_pem.clone(), k.ca_key_pem.clone()))
            })
            .ok_or_else(|| CoreError::Internal("the cluster has no CA yet".into()))?;
        let key = std::str::from_utf8(key.expose())
            .map_err(|_| CoreError::Internal("the stored CA key is malformed".into()))?;
        lockbox_pki::Ca::from_pem(&cert, key)
            .map_err(|e| CoreError::Internal(format!("the stored CA: {e}")))
    }

    fn identify_unix(&self, peer: &UnixPeer) -> Identity {
        let source = match peer.pid {
            Some(pid) => format!("unix uid={} pid={pid}", peer.uid),
            None => format!("unix uid={}", peer.uid),
        };
        if peer.uid == 0 {
            return Identity {
                user: "root".into(),
                groups: Vec::new(),
                source,
                kind: IdentityKind::Root,
            };
        }
        let mut groups = os_groups_cached(peer);
        let user = self
            .store
            .read(|st| st.access.user_by_uid(peer.uid).cloned());
        match user {
            Some(u) => {
                groups.extend(u.groups.iter().cloned());
                groups.sort();
                groups.dedup();
                Identity {
                    user: u.name,
                    groups,
                    source,
                    kind: IdentityKind::User,
                }
            }
            None => Identity {
                user: format!("uid:{}", peer.uid),
                groups,
                source,
                kind: IdentityKind::Unknown,
            },
        }
    }

    fn identify_cert(&self, peer: &CertPeer) -> Identity {
        let source = format!(
            "tls {} cn={} serial={}",
            peer.addr, peer.common_name, peer.serial
        );
        let user = self.store.read(|st| {
            st.access
                .users
                .get(&peer.common_name)
                .filter(|u| {
                    u.certs
                        .iter()
                        .any(|c| c.serial == peer.serial && !c.revoked)
                })
                .cloned()
        });
        match user {
            Some(u) => Identity {
                user: u.name,
                groups: u.groups,
                source,
                kind: IdentityKind::User,
            },
            None => Identity {
                user: format!("cert:{}", peer.common_name),
                groups: Vec::new(),
                source,
                kind: IdentityKind::Unknown,
            },
        }
    }

    pub(crate) fn permissions(&self, id: &Identity) -> Permissions {
        self.store.read(|st| Permissions::of(&st.access, id))
    }

    async fn access_change(&self, change: AccessChange) -> Result<u64, CoreError> {
        match self.store.propose(Command::Access { change }).await? {
            Outcome::Applied { version } => Ok(version),
            Outcome::Rejected(r) => Err(r.into()),
        }
    }
}

/// Whether a key as a caller gave it can be checked against a scope without a lookup.
fn secret_in_scope(p: &Permissions, perm: &str, s: &Secret) -> bool {
    p.covers(perm, &s.spec.name, &s.spec.labels)
}

/// A user as the API shows it.
pub type UserInfo = User;
/// A custom or built-in role as the API shows it: (name, permissions, built in).
pub type RoleInfo = (String, BTreeSet<String>, bool);

impl Manager {
    /// Who a unix-socket peer is. Before the store is open only root is recognized.
    pub async fn identify_unix(&self, peer: UnixPeer) -> Identity {
        match self.active().await {
            Ok(a) => a.identify_unix(&peer),
            Err(_) if peer.uid == 0 => {
                Identity::internal(&format!("unix uid=0 pid={}", peer.pid.unwrap_or(0)))
            }
            Err(_) => Identity {
                user: format!("uid:{}", peer.uid),
                groups: Vec::new(),
                source: format!("unix uid={}", peer.uid),
                kind: IdentityKind::Unknown,
            },
        }
    }

    /// Who a TLS peer is: the user its certificate names, if the certificate is one of that
    /// user's and not revoked.
    pub async fn identify_cert(&self, peer: CertPeer) -> Identity {
        match self.active().await {
            Ok(a) => a.identify_cert(&peer),
            Err(_) => Identity {
                user: format!("cert:{}", peer.common_name),
                groups: Vec::new(),
                source: format!("tls {} cn={}", peer.addr, peer.common_name),
                kind: IdentityKind::Unknown,
            },
        }
    }

    /// What `id` may do. Root may do everything, also while the node is locked or in no
    /// swarm; anyone else needs the store (else: nothing).
    pub async fn permissions(&self, id: &Identity) -> Permissions {
        if id.is_root() {
            return Permissions {
                root: true,
                ..Permissions::default()
            };
        }
        match self.active().await {
            Ok(a) => a.permissions(id),
            Err(_) => Permissions::default(),
        }
    }

    /// Checks a cluster-wide permission (or, for a secret permission, that it is held on
    /// some scope: the object check follows once the object is known).
    pub async fn authorize(&self, id: &Identity, perm: &str) -> Result<(), CoreError> {
        let p = self.permissions(id).await;
        let ok = if is_scoped_permission(perm) {
            p.has_any(perm)
        } else {
            p.has(perm)
        };
        if ok {
            Ok(())
        } else {
            Err(denied(id, perm, None))
        }
    }

    /// Checks a secret permission on the secret `key` names (ID, name or ID prefix). A key
    /// that names nothing, or a secret out of scope, gives the same denial, so a caller
    /// cannot learn what exists outside its scope; callers with the permission on `all` get
    /// the usual not-found instead.
    pub async fn authorize_secret(
        &self,
        id: &Identity,
        perm: &str,
        key: &str,
    ) -> Result<(), CoreError> {
        let p = self.permissions(id).await;
        if p.has(perm) {
            return Ok(());
        }
        let a = self.active().await?;
        match a.resolve_secret(key) {
            Ok(s) if secret_in_scope(&p, perm, &s) => Ok(()),
            _ => Err(denied(id, perm, Some(&format!("secret {key}")))),
        }
    }

    /// Checks a secret permission for a secret about to be created with this name and labels.
    pub async fn authorize_new_secret(
        &self,
        id: &Identity,
        perm: &str,
        name: &str,
        labels: &lockbox_types::Labels,
    ) -> Result<(), CoreError> {
        let p = self.permissions(id).await;
        if p.covers(perm, name, labels) {
            Ok(())
        } else {
            Err(denied(id, perm, Some(&format!("secret {name}"))))
        }
    }

    /// Checks `secret.use` on every secret a spec refers to (by ID, as resolved specs do, or
    /// by name).
    pub async fn authorize_secret_refs(
        &self,
        id: &Identity,
        refs: &[lockbox_types::SecretRef],
    ) -> Result<(), CoreError> {
        let p = self.permissions(id).await;
        if p.has("secret.use") {
            return Ok(());
        }
        let a = self.active().await?;
        for r in refs {
            let s = a
                .resolve_secret(&r.secret_id)
                .or_else(|_| a.resolve_secret(&r.secret_name));
            match s {
                Ok(s) if secret_in_scope(&p, "secret.use", &s) => {}
                _ => {
                    let key = if r.secret_name.is_empty() {
                        &r.secret_id
                    } else {
                        &r.secret_name
                    };
                    return Err(denied(id, "secret.use", Some(&format!("secret {key}"))));
                }
            }
        }
        Ok(())
    }

    /// Issues a client certificate for user `name`, valid `days` days, and records it.
    /// Returns the CA certificate and the issued certificate with its key.
    pub async fn issue_user_cert(
        &self,
        name: &str,
        days: u32,
    ) -> Result<(String, lockbox_pki::Issued), CoreError> {
        if !(1..=3650).contains(&days) {
            return Err(CoreError::InvalidParameter(
                "a certificate is valid for 1 to 3650 days".into(),
            ));
        }
        let a = self.active().await?;
        if a.store.read(|st| !st.access.users.contains_key(name)) {
            return Err(CoreError::NotFound(format!("user {name} not found")));
        }
        let ca = a.ca()?;
        let issued = ca
            .issue_client(
                name,
                std::time::Duration::from_secs(u64::from(days) * 86_400),
            )
            .map_err(|e| CoreError::Internal(format!("issuing a certificate: {e}")))?;
        let not_after = lockbox_types::Timestamp(
            i64::try_from(issued.not_after.unix_timestamp_nanos()).unwrap_or(i64::MAX),
        );
        a.access_change(AccessChange::AddCert {
            name: name.to_owned(),
            cert: lockbox_types::UserCert {
                serial: issued.serial.clone(),
                not_after,
                revoked: false,
            },
            now: now(),
        })
        .await?;
        Ok((ca.cert_pem().to_owned(), issued))
    }

    /// A server certificate for this node's TLS listener, naming `hostnames` and `ips`, and
    /// the CA certificate clients must trust.
    pub async fn issue_server_cert(
        &self,
        hostnames: &[String],
        ips: &[std::net::IpAddr],
    ) -> Result<ServerTlsMaterial, CoreError> {
        let a = self.active().await?;
        let signing = a.signing()?;
        let issued = signing
            .ca
            .issue_server(
                &a.node_id,
                hostnames,
                ips,
                std::time::Duration::from_secs(365 * 86_400),
            )
            .map_err(|e| CoreError::Internal(format!("issuing the server certificate: {e}")))?;
        // Client certificates of the current CA, of the one a rotation moves to and of the
        // one the last rotation replaced are accepted: users' certificates keep working
        // through one rotation (re-issue them before the next).
        let (rotation, previous, previous_cross) = a.store.read(|st| {
            (
                st.pki.rotation.as_ref().map(|r| r.cert_pem.clone()),
                st.pki.previous_root_pem.clone(),
                st.pki.previous_cross_pem.clone(),
            )
        });
        // Clients whose bundle holds the previous CA still accept the listener after the
        // rotation: it presents the current CA cross-signed by the previous one.
        let chain_pem = if rotation.is_some() {
            signing.chain_pem.clone()
        } else {
            previous_cross
        };
        let mut trust_pem = signing.root_pem.clone();
        for extra in rotation.iter().chain([&previous]) {
            if !extra.is_empty() {
                trust_pem.push_str(extra);
            }
        }
        Ok(ServerTlsMaterial {
            client_ca_pem: trust_pem,
            ca_pem: signing.root_pem,
            issued,
            chain_pem,
        })
    }

    /// Changes whenever the CA that issues certificates changes (a root rotation starts or
    /// completes): the TLS listener re-issues its certificate then.
    pub async fn ca_generation(&self) -> Option<String> {
        let a = self.active().await.ok()?;
        a.store.read(|st| {
            let root = st.keys.as_ref()?.ca_cert_pem.clone();
            let rotation = st.pki.rotation.as_ref().map(|r| r.digest.clone());
            Some(format!(
                "{}/{}",
                lockbox_pki::cert_digest(&root).unwrap_or_default(),
                rotation.unwrap_or_default()
            ))
        })
    }

    /// A copy of the access model.
    pub async fn access_model(&self) -> Result<AccessModel, CoreError> {
        Ok(self.active().await?.store.read(|st| st.access.clone()))
    }

    /// Every role: the built-in ones first, then the custom ones.
    pub async fn roles(&self) -> Result<Vec<RoleInfo>, CoreError> {
        let model = self.access_model().await?;
        let mut out: Vec<RoleInfo> = lockbox_types::builtin_roles()
            .into_iter()
            .map(|(n, ps)| {
                (
                    n.to_owned(),
                    ps.into_iter().map(str::to_owned).collect(),
                    true,
                )
            })
            .collect();
        out.extend(
            model
                .roles
                .into_values()
                .map(|r| (r.name, r.permissions, false)),
        );
        Ok(out)
    }

    /// Creates a user.
    pub async fn create_user(
        &self,
        name: &str,
        uid: Option<u32>,
        groups: Vec<String>,
    ) -> Result<(), CoreError> {
        check_principal("user", name)?;
        for g in &groups {
            check_principal("group", g)?;
        }
        if uid == Some(0) {
            return Err(CoreError::InvalidParameter(
                "uid 0 is root, which is always an administrator".into(),
            ));
        }
        let t = now();
        let user = User {
            name: name.to_owned(),
            meta: Meta {
                version: 0,
                created_at: t,
                updated_at: t,
            },
            uid,
            groups,
            certs: Vec::new(),
        };
        self.active()
            .await?
            .access_change(AccessChange::CreateUser(Box::new(user)))
            .await
            .map(|_| ())
    }

    /// Changes a user's uid and groups (`None`: unchanged).
    pub async fn update_user(
        &self,
        name: &str,
        uid: Option<Option<u32>>,
        groups: Option<Vec<String>>,
    ) -> Result<(), CoreError> {
        let a = self.active().await?;
        let current = a
            .store
            .read(|st| st.access.users.get(name).cloned())
            .ok_or_else(|| CoreError::NotFound(format!("user {name} not found")))?;
        let uid = uid.unwrap_or(current.uid);
        if uid == Some(0) {
            return Err(CoreError::InvalidParameter(
                "uid 0 is root, which is always an administrator".into(),
            ));
        }
        let groups = groups.unwrap_or(current.groups);
        for g in &groups {
            check_principal("group", g)?;
        }
        a.access_change(AccessChange::UpdateUser {
            name: name.to_owned(),
            uid,
            groups,
            now: now(),
        })
        .await
        .map(|_| ())
    }

    /// Removes a user, its grants, and (by revocation) its certificates.
    pub async fn remove_user(&self, name: &str) -> Result<(), CoreError> {
        self.active()
            .await?
            .access_change(AccessChange::RemoveUser {
                name: name.to_owned(),
            })
            .await
            .map(|_| ())
    }

    /// Revokes one certificate of a user, or all; returns the serials now revoked by it.
    pub async fn revoke(
        &self,
        name: &str,
        serial: Option<String>,
    ) -> Result<Vec<String>, CoreError> {
        let a = self.active().await?;
        let before: BTreeSet<String> = a.store.read(|st| st.access.revoked_serials());
        a.access_change(AccessChange::Revoke {
            name: name.to_owned(),
            serial,
            now: now(),
        })
        .await?;
        let after: BTreeSet<String> = a.store.read(|st| st.access.revoked_serials());
        Ok(after.difference(&before).cloned().collect())
    }

    /// Every revoked certificate serial.
    pub async fn revoked_serials(&self) -> BTreeSet<String> {
        match self.active().await {
            Ok(a) => a.store.read(|st| st.access.revoked_serials()),
            Err(_) => BTreeSet::new(),
        }
    }

    /// Creates a custom role.
    pub async fn create_role(&self, name: &str, permissions: &[String]) -> Result<(), CoreError> {
        check_principal("role", name)?;
        let permissions = expand_permissions(permissions).map_err(CoreError::InvalidParameter)?;
        let t = now();
        let role = Role {
            name: name.to_owned(),
            meta: Meta {
                version: 0,
                created_at: t,
                updated_at: t,
            },
            permissions,
        };
        self.active()
            .await?
            .access_change(AccessChange::CreateRole(Box::new(role)))
            .await
            .map(|_| ())
    }

    /// Removes a custom role no grant uses.
    pub async fn remove_role(&self, name: &str) -> Result<(), CoreError> {
        self.active()
            .await?
            .access_change(AccessChange::RemoveRole {
                name: name.to_owned(),
            })
            .await
            .map(|_| ())
    }

    /// Creates a grant; returns its ID.
    pub async fn create_grant(
        &self,
        subject: &str,
        role: &str,
        scope: &str,
    ) -> Result<Grant, CoreError> {
        let subject = Subject::parse(subject).map_err(CoreError::InvalidParameter)?;
        let scope = Scope::parse(scope).map_err(CoreError::InvalidParameter)?;
        let t = now();
        let grant = Grant {
            id: lockbox_types::new_id(),
            meta: Meta {
                version: 0,
                created_at: t,
                updated_at: t,
            },
            subject,
            role: role.to_owned(),
            scope,
        };
        let index = self
            .active()
            .await?
            .access_change(AccessChange::CreateGrant(Box::new(grant.clone())))
            .await?;
        Ok(Grant {
            meta: Meta {
                version: index,
                ..grant.meta
            },
            ..grant
        })
    }

    /// Removes a grant by ID (or unique ID prefix).
    pub async fn remove_grant(&self, key: &str) -> Result<Grant, CoreError> {
        let a = self.active().await?;
        let grant = a.store.read(|st| {
            if let Some(g) = st.access.grants.get(key) {
                return Ok(g.clone());
            }
            let m: Vec<&Grant> = st
                .access
                .grants
                .values()
                .filter(|g| !key.is_empty() && g.id.starts_with(key))
                .collect();
            match m.len() {
                1 => Ok(m[0].clone()),
                0 => Err(CoreError::NotFound(format!("grant {key} not found"))),
                n => Err(CoreError::Ambiguous(format!(
                    "grant {key} is ambiguous ({n} matches found)"
                ))),
            }
        })?;
        a.access_change(AccessChange::RemoveGrant {
            id: grant.id.clone(),
        })
        .await?;
        Ok(grant)
    }
}

fn check_principal(kind: &str, name: &str) -> Result<(), CoreError> {
    if valid_principal(name) {
        Ok(())
    } else {
        Err(CoreError::InvalidParameter(format!(
            "invalid {kind} name {name:?}: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> AccessModel {
        let mut m = AccessModel::default();
        let meta = Meta::default();
        for (i, (n, uid, groups)) in [
            ("alice", 1001, vec![]),
            ("bob", 1002, vec!["ops".to_owned()]),
        ]
        .into_iter()
        .enumerate()
        {
            m.apply(
                i as u64 + 1,
                &AccessChange::CreateUser(Box::new(User {
                    name: n.into(),
                    meta: meta.clone(),
                    uid: Some(uid),
                    groups,
                    certs: vec![],
                })),
            )
            .unwrap();
        }
        for (id, subject, role, scope) in [
            ("g1", "user:alice", "secret-writer", "name:app-*"),
            ("g2", "group:ops", "operator", "all"),
            ("g3", "user:alice", "viewer", "label:team=x"),
        ] {
            m.apply(
                10,
                &AccessChange::CreateGrant(Box::new(Grant {
                    id: id.into(),
                    meta: meta.clone(),
                    subject: Subject::parse(subject).unwrap(),
                    role: role.into(),
                    scope: Scope::parse(scope).unwrap(),
                })),
            )
            .unwrap();
        }
        m
    }

    fn who(user: &str, groups: &[&str], kind: IdentityKind) -> Identity {
        Identity {
            user: user.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            source: "test".into(),
            kind,
        }
    }

    #[test]
    fn scoped_grants_give_only_secret_permissions_in_scope() {
        let m = model();
        let none = lockbox_types::Labels::new();
        let team: lockbox_types::Labels = [("team".to_owned(), "x".to_owned())].into();
        let alice = Permissions::of(&m, &who("alice", &[], IdentityKind::User));
        assert!(alice.covers("secret.create", "app-x", &none));
        assert!(!alice.covers("secret.create", "db-x", &none));
        assert!(alice.covers("secret.inspect", "db-x", &team));
        assert!(!alice.covers("secret.create", "db-x", &team));
        // viewer on a label scope gives no cluster-wide service.view.
        assert!(!alice.has("service.view"));
        assert!(alice.has_any("secret.list"));
        let bob = Permissions::of(&m, &who("bob", &["ops"], IdentityKind::User));
        assert!(bob.has("service.manage"));
        assert!(bob.covers("secret.use", "anything", &none));
        assert!(!bob.has_any("secret.create"));
        // An unknown caller named like a user gets nothing from user grants.
        let fake = Permissions::of(&m, &who("alice", &[], IdentityKind::Unknown));
        assert!(!fake.has_any("secret.create"));
        // ...but OS groups count.
        let os = Permissions::of(&m, &who("uid:7", &["ops"], IdentityKind::Unknown));
        assert!(os.has("service.view"));
        let root = Permissions::of(&m, &Identity::internal("t"));
        assert!(root.has("access.manage"));
    }

    #[test]
    fn denial_texts() {
        let id = who("alice", &[], IdentityKind::User);
        assert_eq!(
            denied(&id, "secret.create", Some("secret db-x")).to_string(),
            "permission denied: alice lacks secret.create on secret db-x"
        );
        assert_eq!(
            denied(&id, "node.manage", None).to_string(),
            "permission denied: alice lacks node.manage"
        );
    }

    #[test]
    fn etc_group_lookup_includes_primary_group() {
        // gid 0 is "root" on every Linux system this runs on.
        let g = os_groups(&UnixPeer {
            uid: 1,
            gid: 0,
            pid: None,
        });
        assert!(g.contains(&"root".to_owned()), "{g:?}");
    }
}

/// What the daemon's TLS listener needs from the cluster CA.
#[derive(Debug)]
pub struct ServerTlsMaterial {
    /// The cluster's root CA certificate (what clients should trust), PEM.
    pub ca_pem: String,
    /// The CA certificates whose client certificates are accepted, PEM.
    pub client_ca_pem: String,
    /// The listener's certificate and key.
    pub issued: lockbox_pki::Issued,
    /// Intermediates to present with it (PEM, maybe empty).
    pub chain_pem: String,
}
