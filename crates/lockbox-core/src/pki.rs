//! The node PKI while the cluster runs: node certificates renewed before they expire, root CA
//! rotation (`docker swarm ca --rotate`) without downtime, and the TLS configurations that
//! follow both.
//!
//! - **Who issues.** Every manager holds the CA key (in the replicated, sealed state), so it
//!   renews its own certificate; the leader renews workers' through their dispatcher session.
//!   Every certificate issued is recorded (`RecordNodeCert`: serial, the serial it replaces,
//!   issuing CA, expiry) before it is handed out. The cluster listener accepts a node's
//!   certificate only if it is the recorded one or the one it replaced: older certificates
//!   and those of removed nodes are refused even though they chain to the CA.
//! - **When.** A certificate is renewed when less than a third of the node certificate
//!   validity (`CAConfig.NodeCertExpiry`, 90 days by default) is left, or when it was not
//!   issued by the CA that signs now.
//! - **Rotation.** `swarm update` with a new `ForceRotate` (or a `SigningCACert`/`SigningCAKey`
//!   pair) creates the new CA and cross-signs it with the current one (`StartRootRotation`).
//!   From then on certificates come from the new CA and are presented with the cross-signed
//!   certificate, so nodes that still trust only the current CA accept them. Once every node's
//!   recorded certificate comes from the new CA, the leader completes the rotation
//!   (`FinishRootRotation`): the new CA becomes the cluster's, the join tokens name its digest,
//!   and managers (from the state) and workers (from their session) switch their trust to it.
//!   A node that is down holds the rotation back until it returns or is removed, as in swarm.

use std::sync::{Arc, Weak};
use std::time::Duration;

use lockbox_cluster::{ClusterError, RenewedCert};
use lockbox_crypto::SecretBytes;
use lockbox_pki::{Ca, Issued};
use lockbox_types::{CaRotation, Command, Node, NodeCert, NodeRole, Outcome};
use zeroize::Zeroizing;

use crate::cluster::NodeCerts;
use crate::error::CoreError;
use crate::manager::{Active, now};

/// How often a manager checks its certificate, its trust and the rotation.
const KEEP_PERIOD: Duration = Duration::from_secs(1);

/// The CA that issues node certificates now.
pub(crate) struct Signing {
    pub(crate) ca: Ca,
    /// Intermediates to present with what it issues (the cross-signed certificate while a
    /// rotation is under way).
    pub(crate) chain_pem: String,
    /// The cluster's current root (what nodes trust).
    pub(crate) root_pem: String,
}

/// Whether a certificate should be replaced: issued by another CA than `signing_ca_pem`, or
/// less than a third of `validity` left at `now`.
pub(crate) fn needs_renewal(
    cert_pem: &str,
    not_after: time::OffsetDateTime,
    signing_ca_pem: &str,
    validity: Duration,
    now: time::OffsetDateTime,
) -> bool {
    let third = time::Duration::seconds((validity.as_secs() / 3) as i64);
    !lockbox_pki::issued_by(cert_pem, signing_ca_pem) || not_after - now < third
}

/// The same join token naming the CA `ca_der` (its secret part kept).
fn retarget(token: &str, ca_der: &[u8]) -> String {
    match token.rsplit_once('-') {
        Some((_, secret)) => format!("SWMTKN-1-{}-{secret}", crate::tokens::ca_digest(ca_der)),
        None => crate::tokens::new_token(ca_der),
    }
}

impl Active {
    /// The CA issuing node certificates now, and the root nodes trust.
    pub(crate) fn signing(&self) -> Result<Signing, CoreError> {
        let current = self.ca()?;
        let rotation = self.store.read(|st| st.pki.rotation.clone());
        match rotation {
            None => Ok(Signing {
                root_pem: current.cert_pem().to_owned(),
                ca: current,
                chain_pem: String::new(),
            }),
            Some(r) => {
                let key = std::str::from_utf8(r.key_pem.expose()).map_err(|_| {
                    CoreError::Internal("the stored rotation CA key is malformed".into())
                })?;
                let ca = Ca::from_pem(&r.cert_pem, key)
                    .map_err(|e| CoreError::Internal(format!("the rotation CA: {e}")))?;
                Ok(Signing {
                    root_pem: current.cert_pem().to_owned(),
                    ca,
                    chain_pem: r.cross_pem,
                })
            }
        }
    }

    /// How long node certificates are issued for (`CAConfig.NodeCertExpiry`).
    pub(crate) fn node_cert_validity(&self) -> Duration {
        self.store
            .read(|st| {
                st.cluster
                    .as_ref()
                    .and_then(|c| c.spec.ca_config.node_cert_expiry)
            })
            .filter(|ns| *ns > 0)
            .map(|ns| Duration::from_nanos(ns as u64))
            .unwrap_or(crate::cluster::NODE_CERT_VALIDITY)
    }

    /// Issues a certificate for `node_id` from the signing CA and records it (replacing
    /// `previous`, the serial the node presents now) before returning it.
    pub(crate) async fn issue_recorded(
        &self,
        node_id: &str,
        role: NodeRole,
        hostname: &str,
        addr: &str,
        previous: Option<String>,
    ) -> Result<(Issued, Signing), CoreError> {
        let signing = self.signing()?;
        let issued = crate::cluster::issue_node_cert_for(
            &signing.ca,
            node_id,
            role,
            hostname,
            addr,
            self.node_cert_validity(),
        )?;
        let cert = NodeCert {
            serial: issued.serial.clone(),
            previous,
            issuer: signing.ca.digest().to_owned(),
            not_after: issued.not_after.unix_timestamp(),
        };
        match self
            .store
            .propose(Command::RecordNodeCert {
                node_id: node_id.to_owned(),
                cert,
            })
            .await
        {
            Ok(Outcome::Applied { .. }) => Ok((issued, signing)),
            Ok(Outcome::Rejected(r)) => Err(r.into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the certificate `identity` belongs to a node that is a `role` now and is the
    /// node's recorded certificate (or the one that replaced it): not revoked.
    pub(crate) fn current_cert(
        &self,
        identity: &lockbox_pki::PeerIdentity,
        role: NodeRole,
    ) -> bool {
        self.store.read(|st| {
            st.nodes
                .get(&identity.common_name)
                .is_some_and(|n| n.spec.role == role)
                && st
                    .pki
                    .certs
                    .get(&identity.common_name)
                    .is_none_or(|c| c.accepts(&identity.serial))
        })
    }
}

/// `swarm update` asked for a new CA: generates one (or takes the operator's), cross-signs
/// it with the current CA and records the rotation.
pub(crate) async fn start_rotation(
    a: &Active,
    operator_ca: Option<(String, Zeroizing<String>)>,
) -> Result<(), CoreError> {
    let current = a.ca()?;
    let new = match operator_ca {
        Some((cert, key)) => Ca::from_pem(&cert, &key).map_err(|e| {
            CoreError::InvalidArgument(format!("the new signing CA certificate and key: {e}"))
        })?,
        None => current
            .successor()
            .map_err(|e| CoreError::Internal(format!("generating the new CA: {e}")))?,
    };
    if new.digest() == current.digest() {
        return Err(CoreError::InvalidArgument(
            "the new signing CA is the current one".into(),
        ));
    }
    let (subject, _) = lockbox_pki::issuer_info(new.cert_pem())
        .map_err(|e| CoreError::InvalidArgument(format!("the new signing CA: {e}")))?;
    let (current_subject, _) = lockbox_pki::issuer_info(current.cert_pem())
        .map_err(|e| CoreError::Internal(format!("the current CA: {e}")))?;
    if subject == current_subject {
        return Err(CoreError::InvalidArgument(
            "the new signing CA certificate must have a subject different from the current CA's"
                .into(),
        ));
    }
    let cross_pem = current
        .cross_sign(&new)
        .map_err(|e| CoreError::Internal(format!("cross-signing the new CA: {e}")))?;
    let rotation = CaRotation {
        cert_pem: new.cert_pem().to_owned(),
        key_pem: SecretBytes::new(new.key_pem().as_bytes().to_vec()),
        cross_pem,
        digest: new.digest().to_owned(),
    };
    match a
        .store
        .propose(Command::StartRootRotation {
            rotation: Box::new(rotation),
        })
        .await
    {
        Ok(Outcome::Applied { .. }) => {
            tracing::info!(new_ca = %new.digest(), "root CA rotation started");
            a.kick_pki();
            Ok(())
        }
        Ok(Outcome::Rejected(r)) => Err(r.into()),
        Err(e) => Err(e.into()),
    }
}

/// The leader's part of a worker's session: a new certificate when the worker's should be
/// replaced, the CA to trust when it trusts another, and its reported trust recorded.
pub(crate) async fn for_worker(
    a: &Active,
    node: &Node,
    serial: &str,
    trust_digest: &str,
    renew: bool,
) -> Result<(Option<RenewedCert>, Option<String>), ClusterError> {
    let unavailable = |e: CoreError| ClusterError::unavailable(e.to_string());
    let validity = a.node_cert_validity();
    // Digests only: the CA key is loaded when a certificate is issued, not at every call.
    let (record, trusted, root_pem, rotation_digest) = a.store.read(|st| {
        (
            st.pki.certs.get(&node.id).cloned(),
            st.pki.trust.get(&node.id).cloned(),
            st.keys
                .as_ref()
                .map(|k| k.ca_cert_pem.clone())
                .unwrap_or_default(),
            st.pki.rotation.as_ref().map(|r| r.digest.clone()),
        )
    });
    let root_digest =
        lockbox_pki::cert_digest(&root_pem).map_err(|e| ClusterError::internal(e.to_string()))?;
    let signing_digest = rotation_digest.unwrap_or_else(|| root_digest.clone());
    let third = (validity.as_secs() / 3) as i64;
    let stale = renew
        || match &record {
            None => true,
            Some(r) => {
                r.serial != serial
                    || r.issuer != signing_digest
                    || r.not_after - time::OffsetDateTime::now_utc().unix_timestamp() < third
            }
        };
    let renewed = if stale {
        let (issued, signing) = a
            .issue_recorded(
                &node.id,
                NodeRole::Worker,
                &node.hostname,
                &node.addr,
                Some(serial.to_owned()),
            )
            .await
            .map_err(unavailable)?;
        tracing::info!(node = %node.id, serial = %issued.serial, "renewed a worker's certificate");
        Some(RenewedCert {
            cert_pem: issued.cert_pem.clone(),
            key_pem: issued.key_pem.to_string(),
            chain_pem: signing.chain_pem,
        })
    } else {
        None
    };
    if trusted.as_deref() != Some(trust_digest)
        && !trust_digest.is_empty()
        && let Err(e) = a
            .store
            .propose(Command::RecordTrust {
                node_id: node.id.clone(),
                digest: trust_digest.to_owned(),
            })
            .await
    {
        tracing::warn!(node = %node.id, error = %e, "could not record the worker's trust");
    }
    let trust_pem = (trust_digest != root_digest).then_some(root_pem);
    Ok((renewed, trust_pem))
}

/// Keeps this manager's certificate and trust current and, on the leader, completes a root
/// rotation once every node has a certificate of the new CA.
pub(crate) fn keep(weak: Weak<Active>, hostname: String, advertise: String) {
    let Some(a) = weak.upgrade() else { return };
    if a.pki_keeping
        .swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        return;
    }
    drop(a);
    tokio::spawn(async move {
        loop {
            let Some(a) = weak.upgrade() else { break };
            if a.is_stopping() {
                break;
            }
            if let Err(e) = keep_once(&a, &hostname, &advertise).await {
                tracing::warn!(error = %e, "keeping this node's certificate current");
            }
            let kick = a.pki_kick.clone();
            drop(a);
            tokio::select! {
                _ = kick.notified() => {}
                _ = tokio::time::sleep(KEEP_PERIOD) => {}
            }
        }
    });
}

async fn keep_once(a: &Arc<Active>, hostname: &str, advertise: &str) -> Result<(), CoreError> {
    if a.store.read(|st| st.keys.is_none()) {
        return Ok(());
    }
    let Some(mut certs) = crate::cluster::read_node_certs(&a.data_dir) else {
        return Ok(());
    };
    let signing = a.signing()?;
    let mut changed = false;
    if needs_renewal(
        &certs.issued.cert_pem,
        certs.issued.not_after,
        signing.ca.cert_pem(),
        a.node_cert_validity(),
        time::OffsetDateTime::now_utc(),
    ) {
        let (issued, signing) = a
            .issue_recorded(
                &a.node_id,
                NodeRole::Manager,
                hostname,
                advertise,
                Some(certs.issued.serial.clone()),
            )
            .await?;
        tracing::info!(serial = %issued.serial, not_after = %issued.not_after, "renewed this node's certificate");
        certs.issued = issued;
        certs.chain_pem = signing.chain_pem;
        changed = true;
    }
    if certs.ca_pem != signing.root_pem {
        tracing::info!("this node now trusts the cluster's new root CA");
        certs.ca_pem = signing.root_pem.clone();
        changed = true;
    }
    if changed {
        crate::cluster::write_node_certs(&a.data_dir, &certs)?;
        a.reload_cluster_tls(&certs)?;
    }
    if a.store.is_leader() {
        finish_rotation_when_done(a).await?;
    }
    let others: Vec<String> = a.store.read(|st| {
        st.nodes
            .values()
            .filter(|n| n.spec.role == NodeRole::Manager && n.id != a.node_id)
            .map(|n| n.addr.clone())
            .filter(|addr| !addr.is_empty())
            .collect()
    });
    crate::manager::remember_managers(&a.data_dir, others)
}

/// The leader completes a rotation whose CA has issued every node's recorded certificate.
async fn finish_rotation_when_done(a: &Active) -> Result<(), CoreError> {
    let Some((digest, cert_pem, tokens)) = a.store.read(|st| {
        let r = st.pki.rotation.as_ref()?;
        let all = st
            .nodes
            .keys()
            .all(|id| st.pki.certs.get(id).is_some_and(|c| c.issuer == r.digest));
        all.then(|| {
            (
                r.digest.clone(),
                r.cert_pem.clone(),
                st.cluster.as_ref().map(|c| c.join_tokens.clone()),
            )
        })
    }) else {
        return Ok(());
    };
    let Some(tokens) = tokens else {
        return Ok(());
    };
    let der = lockbox_pki::certs_of("CA certificate", &cert_pem)
        .ok()
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| CoreError::Internal("the rotation CA certificate is malformed".into()))?;
    let join_tokens = lockbox_types::JoinTokens {
        worker: retarget(&tokens.worker, der.as_ref()),
        manager: retarget(&tokens.manager, der.as_ref()),
    };
    match a
        .store
        .propose(Command::FinishRootRotation {
            digest: digest.clone(),
            join_tokens,
            now: now(),
        })
        .await?
    {
        Outcome::Applied { .. } => {
            tracing::info!(new_ca = %digest, "root CA rotation complete: every node has a certificate of the new CA");
            Ok(())
        }
        Outcome::Rejected(r) => {
            tracing::debug!(reason = %r, "root rotation not completed");
            Ok(())
        }
    }
}

/// Builds the node-to-node TLS of `certs`: the dialer and the listener's configuration.
pub(crate) fn tls_of(
    certs: &NodeCerts,
) -> Result<
    (
        Arc<lockbox_cluster::Dialer>,
        Arc<lockbox_pki::rustls::ServerConfig>,
    ),
    CoreError,
> {
    let dialer = crate::cluster::dialer(certs)?;
    let server = lockbox_pki::cluster_server_config(&certs.ca_pem, &certs.issued, &certs.chain_pem)
        .map_err(|e| CoreError::Internal(format!("cluster TLS configuration: {e}")))?;
    Ok((dialer, server))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockbox_pki::NodeRole as PkiRole;

    #[test]
    fn renewal_when_a_third_is_left_or_another_ca_signs() {
        let ca = Ca::generate("c").unwrap();
        let validity = Duration::from_secs(90 * 86_400);
        let cert = ca
            .issue_node("n", PkiRole::Worker, &[], &[], validity)
            .unwrap();
        let t0 = time::OffsetDateTime::now_utc();
        assert!(!needs_renewal(
            &cert.cert_pem,
            cert.not_after,
            ca.cert_pem(),
            validity,
            t0
        ));
        // 59 days on: 31 days left, more than a third (30 days).
        let later = t0 + time::Duration::days(59);
        assert!(!needs_renewal(
            &cert.cert_pem,
            cert.not_after,
            ca.cert_pem(),
            validity,
            later
        ));
        let later = t0 + time::Duration::days(61);
        assert!(needs_renewal(
            &cert.cert_pem,
            cert.not_after,
            ca.cert_pem(),
            validity,
            later
        ));
        // A shorter validity set later does not renew a fresh certificate at once...
        let short = Duration::from_secs(3600);
        assert!(!needs_renewal(
            &cert.cert_pem,
            cert.not_after,
            ca.cert_pem(),
            short,
            t0
        ));
        // ...but a new CA does.
        let next = ca.successor().unwrap();
        assert!(needs_renewal(
            &cert.cert_pem,
            cert.not_after,
            next.cert_pem(),
            validity,
            t0
        ));
    }

    #[test]
    fn tokens_keep_their_secret_and_name_the_new_ca() {
        let old = crate::tokens::new_token(b"old-ca");
        let t = retarget(&old, b"new-ca");
        assert_eq!(
            t.rsplit_once('-').map(|p| p.1),
            old.rsplit_once('-').map(|p| p.1)
        );
        assert_eq!(
            crate::cluster::token_digest(&t),
            Some(crate::tokens::ca_digest(b"new-ca").as_str())
        );
        assert_ne!(
            crate::cluster::token_digest(&t),
            crate::cluster::token_digest(&old)
        );
    }
}

/// A `TLSInfo` as Docker shows it: the trusted root and the issuer of the certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The root CA certificate, PEM.
    pub trust_root: String,
    /// The issuing CA's raw subject (DER).
    pub issuer_subject: Vec<u8>,
    /// The issuing CA's raw SubjectPublicKeyInfo (DER).
    pub issuer_public_key: Vec<u8>,
}

/// The node PKI as `docker swarm ca` and `docker node inspect` show it.
#[derive(Debug, Clone, Default)]
pub struct PkiStatus {
    /// The cluster's: its root and the issuer nodes' certificates should have (the new CA
    /// while a rotation is under way).
    pub cluster: TlsInfo,
    /// Whether a root rotation is under way.
    pub rotation_in_progress: bool,
    /// Each node's: the root it trusts and the issuer of its recorded certificate.
    pub nodes: std::collections::HashMap<String, TlsInfo>,
}

fn tls_info(trust_root: &str, issuer_pem: &str) -> TlsInfo {
    let (issuer_subject, issuer_public_key) =
        lockbox_pki::issuer_info(issuer_pem).unwrap_or_default();
    TlsInfo {
        trust_root: trust_root.to_owned(),
        issuer_subject,
        issuer_public_key,
    }
}

pub(crate) fn status(a: &Active) -> PkiStatus {
    a.store.read(|st| {
        let root = st
            .keys
            .as_ref()
            .map(|k| k.ca_cert_pem.clone())
            .unwrap_or_default();
        let previous = &st.pki.previous_root_pem;
        let rotation = st.pki.rotation.as_ref();
        let desired = rotation.map_or(root.as_str(), |r| r.cert_pem.as_str());
        let digest = |pem: &str| lockbox_pki::cert_digest(pem).unwrap_or_default();
        let (root_digest, previous_digest) = (digest(&root), digest(previous));
        // The CA certificate (PEM) with a given digest, among those the cluster knows.
        let by_digest = |d: &str| -> &str {
            if let Some(r) = rotation.filter(|r| r.digest == d) {
                &r.cert_pem
            } else if d == previous_digest && !previous.is_empty() {
                previous
            } else {
                &root
            }
        };
        let nodes = st
            .nodes
            .values()
            .map(|n| {
                let issuer = st
                    .pki
                    .certs
                    .get(&n.id)
                    .map_or(root.as_str(), |c| by_digest(&c.issuer));
                let trust = match (n.spec.role, st.pki.trust.get(&n.id)) {
                    (NodeRole::Worker, Some(d)) if *d != root_digest => by_digest(d),
                    _ => root.as_str(),
                };
                (n.id.clone(), tls_info(trust, issuer))
            })
            .collect();
        PkiStatus {
            cluster: tls_info(&root, desired),
            rotation_in_progress: rotation.is_some(),
            nodes,
        }
    })
}
