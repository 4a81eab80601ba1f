//! The access-control model: users, roles made of permissions, and grants that bind a user or
//! group to a role on a scope. Stored in the replicated state; evaluated by `lockbox-core`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::object::{Meta, Timestamp};

/// Every permission, in display order. `secret.*` permissions are checked against a grant's
/// scope; the others are cluster-wide and come only from grants whose scope is `all`.
pub const PERMISSIONS: &[&str] = &[
    "secret.create",
    "secret.update",
    "secret.remove",
    "secret.list",
    "secret.inspect",
    "secret.use",
    "service.manage",
    "service.view",
    "node.manage",
    "node.view",
    "swarm.manage",
    "swarm.view",
    "network.manage",
    "network.view",
    "audit.read",
    "access.manage",
];

/// Whether `p` is a permission that a grant's scope narrows (a secret permission).
pub fn is_scoped_permission(p: &str) -> bool {
    p.starts_with("secret.")
}

/// The built-in roles and their permissions.
pub fn builtin_roles() -> Vec<(&'static str, Vec<&'static str>)> {
    const VIEW: &[&str] = &[
        "secret.list",
        "secret.inspect",
        "service.view",
        "node.view",
        "swarm.view",
        "network.view",
    ];
    let mut auditor = VIEW.to_vec();
    auditor.push("audit.read");
    vec![
        ("admin", PERMISSIONS.to_vec()),
        (
            "operator",
            vec![
                "secret.list",
                "secret.inspect",
                "secret.use",
                "service.manage",
                "service.view",
                "node.manage",
                "node.view",
                "swarm.view",
                "network.manage",
                "network.view",
            ],
        ),
        (
            "secret-writer",
            vec![
                "secret.create",
                "secret.update",
                "secret.remove",
                "secret.list",
                "secret.inspect",
            ],
        ),
        ("viewer", VIEW.to_vec()),
        ("auditor", auditor),
    ]
}

/// Expands a role definition's permission list: exact names, or `prefix.*` wildcards
/// (`secret.*`), or `*`. Unknown names are an error naming them.
pub fn expand_permissions(wanted: &[String]) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for w in wanted {
        let w = w.trim();
        let before = out.len();
        if w == "*" {
            out.extend(PERMISSIONS.iter().map(|p| (*p).to_owned()));
        } else if let Some(prefix) = w.strip_suffix(".*") {
            out.extend(
                PERMISSIONS
                    .iter()
                    .filter(|p| p.split_once('.').is_some_and(|(a, _)| a == prefix))
                    .map(|p| (*p).to_owned()),
            );
        } else if PERMISSIONS.contains(&w) {
            out.insert(w.to_owned());
        }
        if out.len() == before && !PERMISSIONS.contains(&w) {
            return Err(format!(
                "unknown permission {w:?} (known: {})",
                PERMISSIONS.join(", ")
            ));
        }
    }
    if out.is_empty() {
        return Err("a role needs at least one permission".into());
    }
    Ok(out)
}

/// A client certificate issued to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCert {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Expiry.
    pub not_after: Timestamp,
    /// Revoked certificates are refused at the TLS handshake.
    pub revoked: bool,
}

/// A lockbox user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Unique name (also the CN of its client certificates).
    pub name: String,
    /// Version and times.
    pub meta: Meta,
    /// The OS uid that is this user on the unix socket.
    pub uid: Option<u32>,
    /// lockbox groups.
    pub groups: Vec<String>,
    /// Client certificates issued to it.
    pub certs: Vec<UserCert>,
}

/// A custom role (built-in roles are not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Unique name.
    pub name: String,
    /// Version and times.
    pub meta: Meta,
    /// Its permissions (expanded).
    pub permissions: BTreeSet<String>,
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Subject {
    /// A user by name.
    User(String),
    /// A group by name: a lockbox group, or an OS group of a unix-socket peer.
    Group(String),
}

impl Subject {
    /// Parses `user:NAME` or `group:NAME`.
    pub fn parse(s: &str) -> Result<Subject, String> {
        match s.split_once(':') {
            Some(("user", n)) if valid_principal(n) => Ok(Subject::User(n.to_owned())),
            Some(("group", n)) if valid_principal(n) => Ok(Subject::Group(n.to_owned())),
            _ => Err(format!(
                "invalid subject {s:?}: expected user:NAME or group:NAME"
            )),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(n) => write!(f, "user:{n}"),
            Subject::Group(n) => write!(f, "group:{n}"),
        }
    }
}

/// Whether `s` may name a user, group or role: 1–64 of `[A-Za-z0-9._-]`, not starting with
/// a dot or dash.
pub fn valid_principal(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What a grant covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// Everything.
    All,
    /// Secrets whose name matches a glob (`*` any run, `?` one character).
    Name(String),
    /// Secrets whose labels match a selector: `k=v` or `k` (present), comma-separated, ANDed.
    Label(Vec<(String, Option<String>)>),
}

impl Scope {
    /// Parses `all`, `name:GLOB` or `label:K=V[,K2[=V2]...]`.
    pub fn parse(s: &str) -> Result<Scope, String> {
        if s == "all" {
            return Ok(Scope::All);
        }
        if let Some(g) = s.strip_prefix("name:") {
            if g.is_empty() || g.len() > 128 {
                return Err("a name scope needs a glob, e.g. name:app-*".into());
            }
            return Ok(Scope::Name(g.to_owned()));
        }
        if let Some(sel) = s.strip_prefix("label:") {
            let mut out = Vec::new();
            for part in sel.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match part.split_once('=') {
                    Some((k, v)) if !k.is_empty() => out.push((k.to_owned(), Some(v.to_owned()))),
                    None => out.push((part.to_owned(), None)),
                    _ => return Err(format!("invalid label selector {part:?}")),
                }
            }
            if out.is_empty() {
                return Err("a label scope needs a selector, e.g. label:team=payments".into());
            }
            return Ok(Scope::Label(out));
        }
        Err(format!(
            "invalid scope {s:?}: expected all, name:GLOB or label:KEY=VALUE"
        ))
    }

    /// Whether a secret with this name and these labels is in scope.
    pub fn covers(&self, name: &str, labels: &crate::Labels) -> bool {
        match self {
            Scope::All => true,
            Scope::Name(g) => glob_match(g.as_bytes(), name.as_bytes()),
            Scope::Label(sel) => sel.iter().all(|(k, v)| match (labels.get(k), v) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(a), Some(w)) => a == w,
            }),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("all"),
            Scope::Name(g) => write!(f, "name:{g}"),
            Scope::Label(sel) => {
                f.write_str("label:")?;
                for (i, (k, v)) in sel.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    match v {
                        Some(v) => write!(f, "{k}={v}")?,
                        None => f.write_str(k)?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// `*` matches any run of characters, `?` exactly one; everything else literally.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with one backtrack point (the last `*`): linear in practice.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A role bound to a subject on a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// ID.
    pub id: String,
    /// Version and times.
    pub meta: Meta,
    /// Who.
    pub subject: Subject,
    /// Role name (built-in or custom).
    pub role: String,
    /// On what.
    pub scope: Scope,
}

/// Changes to the access model; one is carried by [`crate::Command::Access`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessChange {
    /// Create a user. Rejected if the name or uid is taken.
    CreateUser(Box<User>),
    /// Change a user's uid and groups.
    UpdateUser {
        /// Name.
        name: String,
        /// New uid.
        uid: Option<u32>,
        /// New groups.
        groups: Vec<String>,
        /// Time.
        now: Timestamp,
    },
    /// Remove a user with its grants; its certificates stay listed as revoked.
    RemoveUser {
        /// Name.
        name: String,
    },
    /// Record a certificate issued to a user.
    AddCert {
        /// User.
        name: String,
        /// The certificate.
        cert: UserCert,
        /// Time.
        now: Timestamp,
    },
    /// Revoke one certificate of a user, or all of them.
    Revoke {
        /// User.
        name: String,
        /// A serial, or `None` for all.
        serial: Option<String>,
        /// Time.
        now: Timestamp,
    },
    /// Create a custom role. Rejected if the name is taken (also by a built-in).
    CreateRole(Box<Role>),
    /// Remove a custom role. Rejected while a grant uses it.
    RemoveRole {
        /// Name.
        name: String,
    },
    /// Create a grant.
    CreateGrant(Box<Grant>),
    /// Remove a grant.
    RemoveGrant {
        /// ID.
        id: String,
    },
}

/// The access model in the replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessModel {
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Custom roles by name.
    pub roles: BTreeMap<String, Role>,
    /// Grants by ID.
    pub grants: BTreeMap<String, Grant>,
    /// Serials of certificates of removed users (kept so they stay refused).
    pub revoked: BTreeSet<String>,
}

impl AccessModel {
    /// The permissions of a role, built-in or custom.
    pub fn role_permissions(&self, role: &str) -> Option<BTreeSet<String>> {
        if let Some((_, perms)) = builtin_roles().into_iter().find(|(n, _)| *n == role) {
            return Some(perms.into_iter().map(str::to_owned).collect());
        }
        self.roles.get(role).map(|r| r.permissions.clone())
    }

    /// Every revoked serial.
    pub fn revoked_serials(&self) -> BTreeSet<String> {
        let mut out = self.revoked.clone();
        for u in self.users.values() {
            out.extend(
                u.certs
                    .iter()
                    .filter(|c| c.revoked)
                    .map(|c| c.serial.clone()),
            );
        }
        out
    }

    /// The user a unix uid is, if any.
    pub fn user_by_uid(&self, uid: u32) -> Option<&User> {
        self.users.values().find(|u| u.uid == Some(uid))
    }

    /// Applies a change; `index` is the entry's log index. Errors are texts for a
    /// `Rejection::Refused` (conflicts) or `NotFound` (`Err((true, ..))`).
    pub fn apply(&mut self, index: u64, change: &AccessChange) -> Result<(), AccessError> {
        match change {
            AccessChange::CreateUser(u) => {
                if self.users.contains_key(&u.name) {
                    return Err(AccessError::Conflict(format!(
                        "user {} already exists",
                        u.name
                    )));
                }
                if let Some(uid) = u.uid
                    && let Some(other) = self.user_by_uid(uid)
                {
                    return Err(AccessError::Conflict(format!(
                        "uid {uid} is already user {}",
                        other.name
                    )));
                }
                let mut u = (**u).clone();
                u.meta.version = index;
                self.users.insert(u.name.clone(), u);
            }
            AccessChange::UpdateUser {
                name,
                uid,
                groups,
                now,
            } => {
                if let Some(uid) = uid
                    && let Some(other) = self.user_by_uid(*uid)
                    && &other.name != name
                {
                    return Err(AccessError::Conflict(format!(
                        "uid {uid} is already user {}",
                        other.name
                    )));
                }
                let u = self.user_mut(name)?;
                u.uid = *uid;
                u.groups = groups.clone();
                u.meta.version = index;
                u.meta.updated_at = *now;
            }
            AccessChange::RemoveUser { name } => {
                let u = self
                    .users
                    .remove(name)
                    .ok_or_else(|| AccessError::NotFound(format!("user {name} not found")))?;
                self.revoked.extend(u.certs.into_iter().map(|c| c.serial));
                let subject = Subject::User(name.clone());
                self.grants.retain(|_, g| g.subject != subject);
            }
            AccessChange::AddCert { name, cert, now } => {
                let u = self.user_mut(name)?;
                u.certs.push(cert.clone());
                u.meta.version = index;
                u.meta.updated_at = *now;
            }
            AccessChange::Revoke { name, serial, now } => {
                let u = self.user_mut(name)?;
                let mut hit = false;
                for c in &mut u.certs {
                    if serial.as_ref().is_none_or(|s| s == &c.serial) {
                        c.revoked = true;
                        hit = true;
                    }
                }
                if let Some(s) = serial
                    && !hit
                {
                    return Err(AccessError::NotFound(format!(
                        "certificate {s} of user {name} not found"
                    )));
                }
                u.meta.version = index;
                u.meta.updated_at = *now;
            }
            AccessChange::CreateRole(r) => {
                if self.roles.contains_key(&r.name)
                    || builtin_roles().iter().any(|(n, _)| *n == r.name)
                {
                    return Err(AccessError::Conflict(format!(
                        "role {} already exists",
                        r.name
                    )));
                }
                let mut r = (**r).clone();
                r.meta.version = index;
                self.roles.insert(r.name.clone(), r);
            }
            AccessChange::RemoveRole { name } => {
                if builtin_roles().iter().any(|(n, _)| n == name) {
                    return Err(AccessError::Conflict(format!(
                        "role {name} is built in and cannot be removed"
                    )));
                }
                if !self.roles.contains_key(name) {
                    return Err(AccessError::NotFound(format!("role {name} not found")));
                }
                let users: Vec<String> = self
                    .grants
                    .values()
                    .filter(|g| &g.role == name)
                    .map(|g| g.id.clone())
                    .collect();
                if !users.is_empty() {
                    return Err(AccessError::Conflict(format!(
                        "role {name} is used by grant{} {}",
                        if users.len() == 1 { "" } else { "s" },
                        users.join(", ")
                    )));
                }
                self.roles.remove(name);
            }
            AccessChange::CreateGrant(g) => {
                if self.role_permissions(&g.role).is_none() {
                    return Err(AccessError::NotFound(format!("role {} not found", g.role)));
                }
                if let Subject::User(n) = &g.subject
                    && !self.users.contains_key(n)
                {
                    return Err(AccessError::NotFound(format!("user {n} not found")));
                }
                if self.grants.contains_key(&g.id) {
                    return Err(AccessError::Conflict(format!(
                        "grant {} already exists",
                        g.id
                    )));
                }
                let mut g = (**g).clone();
                g.meta.version = index;
                self.grants.insert(g.id.clone(), g);
            }
            AccessChange::RemoveGrant { id } => {
                if self.grants.remove(id).is_none() {
                    return Err(AccessError::NotFound(format!("grant {id} not found")));
                }
            }
        }
        Ok(())
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut User, AccessError> {
        self.users
            .get_mut(name)
            .ok_or_else(|| AccessError::NotFound(format!("user {name} not found")))
    }
}

/// Why an access change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    /// Something it names does not exist.
    NotFound(String),
    /// It conflicts with what exists.
    Conflict(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("app-*", "app-x", true),
            ("app-*", "app-", true),
            ("app-*", "db-x", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*-v*", "roi-poc-jwt-v12", true),
            ("roi-poc-*-v1", "roi-poc-jwt-v1", true),
            ("roi-poc-*-v1", "roi-poc-jwt-v12", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob_match(p.as_bytes(), t.as_bytes()), want, "{p} {t}");
        }
    }

    proptest::proptest! {
        #[test]
        fn glob_literal_and_star(s in "[a-z0-9_.-]{0,20}", cut in 0usize..20) {
            proptest::prop_assert!(glob_match(s.as_bytes(), s.as_bytes()));
            let cut = cut.min(s.len());
            let pat = format!("{}*", &s[..cut]);
            proptest::prop_assert!(glob_match(pat.as_bytes(), s.as_bytes()));
            let pat = format!("*{}", &s[cut..]);
            proptest::prop_assert!(glob_match(pat.as_bytes(), s.as_bytes()));
        }

        #[test]
        fn scope_round_trips(s in "(all|name:[a-z*?-]{1,10}|label:[a-z]{1,5}(=[a-z]{0,5})?(,[a-z]{1,5}=[a-z]{1,3})?)") {
            let parsed = Scope::parse(&s).unwrap();
            proptest::prop_assert_eq!(parsed.to_string(), s);
        }
    }

    #[test]
    fn scopes() {
        let labels: crate::Labels = [("team".to_owned(), "pay".to_owned())]
            .into_iter()
            .collect();
        assert!(Scope::parse("label:team=pay").unwrap().covers("x", &labels));
        assert!(Scope::parse("label:team").unwrap().covers("x", &labels));
        assert!(!Scope::parse("label:team=ops").unwrap().covers("x", &labels));
        assert!(!Scope::parse("label:env").unwrap().covers("x", &labels));
        assert!(Scope::parse("name:app-*").unwrap().covers("app-x", &labels));
        assert!(Scope::parse("bogus").is_err());
        assert!(Scope::parse("label:").is_err());
        assert_eq!(
            Subject::parse("user:alice").unwrap().to_string(),
            "user:alice"
        );
        assert!(Subject::parse("alice").is_err());
        assert!(Subject::parse("user:").is_err());
    }

    #[test]
    fn permissions_expand() {
        let p = expand_permissions(&["secret.*".into()]).unwrap();
        assert_eq!(p.len(), 6);
        assert!(expand_permissions(&["secret.read".into()]).is_err());
        assert!(expand_permissions(&[]).is_err());
        assert_eq!(
            expand_permissions(&["*".into()]).unwrap().len(),
            PERMISSIONS.len()
        );
        for (_, perms) in builtin_roles() {
            for p in perms {
                assert!(PERMISSIONS.contains(&p), "{p}");
            }
        }
    }

    fn meta() -> Meta {
        Meta::default()
    }

    #[test]
    fn model_rules() {
        let mut m = AccessModel::default();
        let user = |n: &str, uid| User {
            name: n.into(),
            meta: meta(),
            uid,
            groups: vec![],
            certs: vec![],
        };
        m.apply(
            1,
            &AccessChange::CreateUser(Box::new(user("alice", Some(1001)))),
        )
        .unwrap();
        assert!(matches!(
            m.apply(
                2,
                &AccessChange::CreateUser(Box::new(user("bob", Some(1001))))
            ),
            Err(AccessError::Conflict(_))
        ));
        let grant = |id: &str, role: &str| Grant {
            id: id.into(),
            meta: meta(),
            subject: Subject::User("alice".into()),
            role: role.into(),
            scope: Scope::All,
        };
        assert!(matches!(
            m.apply(3, &AccessChange::CreateGrant(Box::new(grant("g1", "nope")))),
            Err(AccessError::NotFound(_))
        ));
        m.apply(
            4,
            &AccessChange::CreateRole(Box::new(Role {
                name: "ci".into(),
                meta: meta(),
                permissions: ["secret.use".to_owned()].into_iter().collect(),
            })),
        )
        .unwrap();
        m.apply(5, &AccessChange::CreateGrant(Box::new(grant("g1", "ci"))))
            .unwrap();
        assert!(matches!(
            m.apply(6, &AccessChange::RemoveRole { name: "ci".into() }),
            Err(AccessError::Conflict(_))
        ));
        assert!(matches!(
            m.apply(
                6,
                &AccessChange::RemoveRole {
                    name: "admin".into()
                }
            ),
            Err(AccessError::Conflict(_))
        ));
        m.apply(
            7,
            &AccessChange::AddCert {
                name: "alice".into(),
                cert: UserCert {
                    serial: "ab".into(),
                    not_after: Timestamp::default(),
                    revoked: false,
                },
                now: Timestamp::default(),
            },
        )
        .unwrap();
        m.apply(
            8,
            &AccessChange::RemoveUser {
                name: "alice".into(),
            },
        )
        .unwrap();
        assert!(m.grants.is_empty());
        assert!(m.revoked_serials().contains("ab"));
    }
}
