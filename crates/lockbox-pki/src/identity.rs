//! Reading who a certificate names: [`identity_of`], [`PeerIdentity`] and
//! the roles encoded in the organizational unit.

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::AttributeTypeAndValue;

use crate::{PkiError, Result};

/// Organizational unit of certificates issued to lockbox users
/// ([`Ca::issue_client`](crate::Ca::issue_client)).
pub const OU_USER: &str = "lockbox-user";
/// Organizational unit of manager node certificates, including the
/// daemon's TLS listener certificate.
pub const OU_MANAGER: &str = "lockbox-manager";
/// Organizational unit of worker node certificates.
pub const OU_WORKER: &str = "lockbox-worker";

/// The role a certificate grants, encoded in its organizational unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A lockbox user (OU [`OU_USER`]).
    User,
    /// A manager node (OU [`OU_MANAGER`]).
    Manager,
    /// A worker node (OU [`OU_WORKER`]).
    Worker,
}

impl Role {
    /// The organizational unit that encodes this role.
    pub fn org_unit(self) -> &'static str {
        match self {
            Role::User => OU_USER,
            Role::Manager => OU_MANAGER,
            Role::Worker => OU_WORKER,
        }
    }

    /// The role encoded by an organizational unit, if it is one of ours.
    pub fn from_org_unit(ou: &str) -> Option<Role> {
        match ou {
            OU_USER => Some(Role::User),
            OU_MANAGER => Some(Role::Manager),
            OU_WORKER => Some(Role::Worker),
            _ => None,
        }
    }
}

/// The role of a cluster node (swarmkit's manager/worker split).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRole {
    /// A manager: runs Raft and serves the API.
    Manager,
    /// A worker: runs tasks only.
    Worker,
}

impl From<NodeRole> for Role {
    fn from(role: NodeRole) -> Role {
        match role {
            NodeRole::Manager => Role::Manager,
            NodeRole::Worker => Role::Worker,
        }
    }
}

/// Who a certificate names, as read by [`identity_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerIdentity {
    /// The subject common name: the user name or node id.
    pub common_name: String,
    /// The subject organizational unit (see [`Role`]), if any.
    pub org_unit: Option<String>,
    /// The subject organization: the cluster name for certificates of a
    /// lockbox CA.
    pub organization: Option<String>,
    /// The serial number in lower-case hex without separators or leading
    /// zero bytes, the format of [`Issued::serial`](crate::Issued::serial)
    /// and [`Revocations`](crate::Revocations).
    pub serial: String,
    /// The end of the validity period.
    pub not_after: OffsetDateTime,
}

impl PeerIdentity {
    /// The role encoded in the organizational unit, if it is one of ours.
    pub fn role(&self) -> Option<Role> {
        self.org_unit.as_deref().and_then(Role::from_org_unit)
    }
}

/// Reads the identity out of a DER certificate.
///
/// This only parses: it does not check the signature, the issuer or the
/// validity period. Use it on certificates that a TLS handshake with a
/// [`server_config`](crate::server_config) has verified (see
/// [`peer_identity`](crate::peer_identity)), or on certificates this crate
/// has just issued.
///
/// Fails if the certificate cannot be parsed, has no common name, or has
/// more than one common name, organizational unit or organization (an
/// ambiguous identity is refused rather than guessed).
pub fn identity_of(cert_der: &[u8]) -> Result<PeerIdentity> {
    let cert = parse("certificate", cert_der)?;
    identity_of_parsed(&cert)
}

pub(crate) fn parse<'a>(what: &'static str, der: &'a [u8]) -> Result<X509Certificate<'a>> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(PkiError::cert(what, "trailing data after the certificate")),
        Err(e) => Err(PkiError::cert(what, format!("cannot parse: {e}"))),
    }
}

pub(crate) fn identity_of_parsed(cert: &X509Certificate<'_>) -> Result<PeerIdentity> {
    let subject = cert.subject();
    let common_name = single("common name", subject.iter_common_name())?
        .ok_or_else(|| PkiError::cert("certificate", "no common name"))?;
    let org_unit = single("organizational unit", subject.iter_organizational_unit())?;
    let organization = single("organization", subject.iter_organization())?;
    Ok(PeerIdentity {
        common_name,
        org_unit,
        organization,
        serial: serial_hex(cert.raw_serial()),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

/// The value of an attribute that must occur at most once.
fn single<'a, 'b: 'a>(
    what: &'static str,
    mut values: impl Iterator<Item = &'a AttributeTypeAndValue<'b>>,
) -> Result<Option<String>> {
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(PkiError::cert(
            "certificate",
            format!("more than one {what}"),
        ));
    }
    first
        .as_str()
        .map(|s| Some(s.to_owned()))
        .map_err(|_| PkiError::cert("certificate", format!("{what} is not a string")))
}

/// The canonical text form of a serial number: lower-case hex of the
/// integer's bytes without leading zero bytes (`"00"` for zero).
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    if start == raw.len() {
        return "00".to_owned();
    }
    hex::encode(&raw[start..])
}

/// Brings a serial given as text into the canonical form of
/// [`serial_hex`]: lower case, `:` and whitespace removed, leading `00`
/// pairs removed.
pub(crate) fn normalize_serial(serial: &str) -> String {
    let mut s: String = serial
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    while s.len() > 2 && s.starts_with("00") {
        s.drain(..2);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_strips_sign_byte() {
        assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0x7f, 0x00]), "7f00");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "00");
    }

    #[test]
    fn normalize_matches_serial_hex() {
        assert_eq!(normalize_serial("00:80:AB"), "80ab");
        assert_eq!(normalize_serial(" 4F 01 "), "4f01");
        assert_eq!(normalize_serial("00"), "00");
        assert_eq!(normalize_serial(&serial_hex(&[0, 0x90, 0x0a])), "900a");
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::User, Role::Manager, Role::Worker] {
            assert_eq!(Role::from_org_unit(role.org_unit()), Some(role));
        }
        assert_eq!(Role::from_org_unit("swarm-manager"), None);
        assert_eq!(Role::from(NodeRole::Worker), Role::Worker);
    }
}
