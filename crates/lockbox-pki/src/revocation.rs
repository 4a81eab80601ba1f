//! The set of revoked certificate serials checked at handshake time.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use crate::identity::normalize_serial;

/// A shared, updatable set of revoked certificate serial numbers.
///
/// Clones share the set: the daemon keeps one clone, hands another to
/// [`server_config`](crate::server_config), and every later
/// [`revoke`](Revocations::revoke) or [`replace`](Revocations::replace) is
/// seen by the next TLS handshake. Connections that were already
/// established are not affected; a server that must cut those off checks
/// [`is_revoked`](Revocations::is_revoked) on the
/// [`peer_identity`](crate::peer_identity) per request.
///
/// Serials are compared in the canonical form of [`Issued::serial`]
/// (lower-case hex, no separators, no leading zero bytes); inputs in other
/// common spellings (`00:8F:…`, upper case) are normalized.
///
/// [`Issued::serial`]: crate::Issued::serial
#[derive(Clone, Default)]
pub struct Revocations {
    set: Arc<RwLock<HashSet<String>>>,
}

impl Revocations {
    /// An empty set.
    pub fn new() -> Revocations {
        Revocations::default()
    }

    /// Replaces the whole set (for example with the revocation list just
    /// read from the replicated state).
    pub fn replace<I, S>(&self, serials: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let fresh: HashSet<String> = serials
            .into_iter()
            .map(|s| normalize_serial(s.as_ref()))
            .collect();
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    /// Adds one serial. Returns `false` if it was already revoked.
    pub fn revoke(&self, serial: &str) -> bool {
        self.set
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(normalize_serial(serial))
    }

    /// Whether `serial` is revoked.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&normalize_serial(serial))
    }

    /// The number of revoked serials.
    pub fn len(&self) -> usize {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no serial is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocations")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_set() {
        let a = Revocations::new();
        let b = a.clone();
        assert!(a.is_empty());
        assert!(a.revoke("00:AB:CD"));
        assert!(!b.revoke("abcd"));
        assert!(b.is_revoked("ABCD"));
        assert_eq!(a.len(), 1);
        b.replace(["0102", "ff"]);
        assert!(!a.is_revoked("abcd"));
        assert!(a.is_revoked("01:02"));
        assert!(a.is_revoked("FF"));
        assert_eq!(a.len(), 2);
    }
}
