//! Certificate authority, issuance, identity and bundle tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use lockbox_pki::{
    Ca, Issued, NodeRole, OU_MANAGER, OU_USER, OU_WORKER, PkiError, Role, Validity, identity_of,
    read_bundle, write_bundle,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

const DAY: Duration = Duration::from_secs(86_400);

fn der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("one certificate")
        .to_vec()
}

fn with_cert<T>(pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let der = der(pem);
    let (rest, cert) = x509_parser::parse_x509_certificate(&der).expect("parses");
    assert!(rest.is_empty());
    f(&cert)
}

fn ekus(cert: &X509Certificate<'_>) -> (bool, bool) {
    let eku = cert
        .extended_key_usage()
        .expect("valid EKU")
        .expect("has EKU")
        .value;
    assert!(!eku.any);
    (eku.server_auth, eku.client_auth)
}

fn assert_close(a: OffsetDateTime, b: OffsetDateTime) {
    assert!((a - b).abs() < time::Duration::seconds(5), "{a} vs {b}");
}

#[test]
fn ca_round_trips_and_issues_client_certificates() {
    let ca = Ca::generate("prod").unwrap();
    let key_pem = ca.key_pem();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let restored = Ca::from_pem(ca.cert_pem(), &key_pem).unwrap();
    assert_eq!(restored.cert_pem(), ca.cert_pem());
    assert_eq!(restored.digest(), ca.digest());
    assert_eq!(restored.cluster_name(), Some("prod"));
    assert_eq!(*restored.key_pem(), *key_pem);

    let alice = restored.issue_client("alice", 30 * DAY).unwrap();
    let who = identity_of(&der(&alice.cert_pem)).unwrap();
    assert_eq!(who.common_name, "alice");
    assert_eq!(who.org_unit.as_deref(), Some(OU_USER));
    assert_eq!(who.organization.as_deref(), Some("prod"));
    assert_eq!(who.role(), Some(Role::User));
    assert_eq!(who.serial, alice.serial);
    assert_eq!(who.not_after, alice.not_after);
    assert_eq!(alice.serial.len(), 32);
    assert!(
        alice
            .serial
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_close(
        alice.not_after,
        OffsetDateTime::now_utc() + time::Duration::days(30),
    );

    // Serials are random.
    let again = restored.issue_client("alice", 30 * DAY).unwrap();
    assert_ne!(again.serial, alice.serial);
}

#[test]
fn ca_certificate_has_the_expected_shape() {
    let ca = Ca::generate("prod").unwrap();
    with_cert(ca.cert_pem(), |cert| {
        assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
        let cn: Vec<_> = cert.subject().iter_common_name().collect();
        assert_eq!(cn.len(), 1);
        assert_eq!(cn[0].as_str().unwrap(), "lockbox-ca");
        let o = cert.subject().iter_organization().next().unwrap();
        assert_eq!(o.as_str().unwrap(), "prod");

        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical);
        assert!(bc.value.ca);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert!(cert.extended_key_usage().unwrap().is_none());

        let years = (cert.validity().not_after.to_datetime()
            - cert.validity().not_before.to_datetime())
        .whole_days()
            / 365;
        assert_eq!(years, 20);
        assert_eq!(cert.validity().not_after.to_datetime(), ca.not_after());
        assert!(cert.validity().is_valid());

        // Signed by its own key.
        cert.verify_signature(None).unwrap();
    });
    let digest = hex::encode(Sha256::digest(der(ca.cert_pem())));
    assert_eq!(ca.digest(), digest);
}

/// Leaves from a generated and from a restored CA name the CA subject
/// byte for byte as issuer and verify under the CA key.
#[test]
fn leaves_chain_to_the_ca() {
    let ca = Ca::generate("prod").unwrap();
    let restored = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
    let ca_der = der(ca.cert_pem());
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    let ca_ski = ca_cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .expect("CA has a subject key identifier");

    for issuer in [&ca, &restored] {
        let leaf = issuer.issue_client("bob", DAY).unwrap();
        with_cert(&leaf.cert_pem, |cert| {
            assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
            cert.verify_signature(Some(ca_cert.public_key())).unwrap();
            let aki = cert
                .iter_extensions()
                .find_map(|e| match e.parsed_extension() {
                    x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                        a.key_identifier.as_ref().map(|k| k.0.to_vec())
                    }
                    _ => None,
                })
                .expect("leaf has an authority key identifier");
            assert_eq!(aki, ca_ski);
        });
    }
}

#[test]
fn client_certificate_usages() {
    let ca = Ca::generate("prod").unwrap();
    let alice = ca.issue_client("alice", DAY).unwrap();
    with_cert(&alice.cert_pem, |cert| {
        assert_eq!(ekus(cert), (false, true));
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature());
        assert!(!ku.key_cert_sign());
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);
        assert!(cert.subject_alternative_name().unwrap().is_none());
        // Positive, exactly 16 bytes.
        assert_eq!(cert.raw_serial().len(), 16);
        assert_eq!(cert.raw_serial()[0] & 0x80, 0);
        assert_eq!(cert.raw_serial_as_string().replace(':', ""), alice.serial);
    });
}

#[test]
fn server_and_node_certificates() {
    let ca = Ca::generate("prod").unwrap();
    let node = "7ua4q3bxk7pwpqhbc1d8qa2xz";
    let server = ca
        .issue_server(
            node,
            &[
                "localhost".to_owned(),
                "node1.example".to_owned(),
                "10.0.0.7".to_owned(),
            ],
            &[
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ],
            90 * DAY,
        )
        .unwrap();
    let who = identity_of(&der(&server.cert_pem)).unwrap();
    assert_eq!(who.common_name, node);
    assert_eq!(who.org_unit.as_deref(), Some(OU_MANAGER));
    assert_eq!(who.role(), Some(Role::Manager));
    with_cert(&server.cert_pem, |cert| {
        assert_eq!(ekus(cert), (true, true));
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => format!("dns:{d}"),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => format!("ip:{}", Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap())),
                    16 => format!("ip:{}", Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap())),
                    _ => panic!("bad IP SAN"),
                },
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect();
        assert_eq!(
            sans,
            [
                format!("dns:{node}"),
                "dns:lockbox-manager".to_owned(),
                "dns:localhost".to_owned(),
                "dns:node1.example".to_owned(),
                "ip:10.0.0.7".to_owned(),
                "ip:127.0.0.1".to_owned(),
                "ip:::1".to_owned(),
            ]
        );
    });

    let worker = ca
        .issue_node(node, NodeRole::Worker, &[], &[], DAY)
        .unwrap();
    let who = identity_of(&der(&worker.cert_pem)).unwrap();
    assert_eq!(who.org_unit.as_deref(), Some(OU_WORKER));
    assert_eq!(who.role(), Some(Role::Worker));
    with_cert(&worker.cert_pem, |cert| {
        assert_eq!(ekus(cert), (false, true))
    });

    let manager = ca
        .issue_node(node, NodeRole::Manager, &[], &[], DAY)
        .unwrap();
    with_cert(&manager.cert_pem, |cert| {
        assert_eq!(ekus(cert), (true, true))
    });
}

#[test]
fn validity_is_capped_at_the_ca_and_may_be_explicit() {
    let ca = Ca::generate("prod").unwrap();
    let long = ca.issue_client("alice", 100 * 365 * DAY).unwrap();
    assert_eq!(long.not_after, ca.not_after());

    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let past = ca
        .issue_client(
            "old",
            Validity::between(now - time::Duration::days(2), now - time::Duration::days(1)),
        )
        .unwrap();
    assert_eq!(past.not_after, now - time::Duration::days(1));
    with_cert(&past.cert_pem, |cert| assert!(!cert.validity().is_valid()));

    assert!(matches!(
        ca.issue_client("x", Duration::ZERO),
        Err(PkiError::InvalidValidity(_))
    ));
    assert!(matches!(
        ca.issue_client("x", Validity::between(now, now - time::Duration::hours(1))),
        Err(PkiError::InvalidValidity(_))
    ));
}

#[test]
fn bad_names_are_refused() {
    let ca = Ca::generate("prod").unwrap();
    assert!(matches!(
        ca.issue_client("", DAY),
        Err(PkiError::InvalidName {
            what: "user name",
            ..
        })
    ));
    assert!(matches!(
        ca.issue_client("al\nice", DAY),
        Err(PkiError::InvalidName { .. })
    ));
    assert!(matches!(
        ca.issue_server("node", &["bad host".to_owned()], &[], DAY),
        Err(PkiError::InvalidName {
            what: "host name",
            ..
        })
    ));
    assert!(matches!(
        ca.issue_server("node id with spaces", &[], &[], DAY),
        Err(PkiError::InvalidName {
            what: "node id",
            ..
        })
    ));
    assert!(matches!(
        Ca::generate(" prod"),
        Err(PkiError::InvalidName {
            what: "cluster name",
            ..
        })
    ));
}

#[test]
fn from_pem_rejects_mismatches_and_non_cas() {
    let a = Ca::generate("prod").unwrap();
    let b = Ca::generate("prod").unwrap();
    assert!(matches!(
        Ca::from_pem(a.cert_pem(), &b.key_pem()),
        Err(PkiError::KeyMismatch(_))
    ));

    let leaf = a.issue_client("alice", DAY).unwrap();
    assert!(matches!(
        Ca::from_pem(&leaf.cert_pem, &leaf.key_pem),
        Err(PkiError::NotCa)
    ));

    assert!(matches!(
        Ca::from_pem("not pem", &a.key_pem()),
        Err(PkiError::Pem { .. })
    ));
    let two = format!("{}{}", a.cert_pem(), b.cert_pem());
    assert!(matches!(
        Ca::from_pem(&two, &a.key_pem()),
        Err(PkiError::Pem { .. })
    ));
    assert!(matches!(
        Ca::from_pem(a.cert_pem(), a.cert_pem()),
        Err(PkiError::Pem { .. })
    ));

    // A certificate PEM that also carries the key: only the certificate is
    // kept, so the key cannot leak into ca.pem.
    let mixed = format!("{}{}", a.cert_pem(), *a.key_pem());
    let restored = Ca::from_pem(&mixed, &a.key_pem()).unwrap();
    assert_eq!(restored.cert_pem(), a.cert_pem());
    assert!(!restored.cert_pem().contains("PRIVATE KEY"));
}

#[test]
fn issued_from_pem_round_trips_and_checks_the_key() {
    let ca = Ca::generate("prod").unwrap();
    let alice = ca.issue_client("alice", DAY).unwrap();
    let bob = ca.issue_client("bob", DAY).unwrap();
    let loaded = Issued::from_pem(&alice.cert_pem, &alice.key_pem).unwrap();
    assert_eq!(loaded.cert_pem, alice.cert_pem);
    assert_eq!(*loaded.key_pem, *alice.key_pem);
    assert_eq!(loaded.serial, alice.serial);
    assert_eq!(loaded.not_after, alice.not_after);
    assert!(matches!(
        Issued::from_pem(&alice.cert_pem, &bob.key_pem),
        Err(PkiError::KeyMismatch(_))
    ));
}

#[test]
fn debug_output_never_shows_keys() {
    let ca = Ca::generate("prod").unwrap();
    let alice = ca.issue_client("alice", DAY).unwrap();
    let ca_key = ca.key_pem();
    let ca_body = ca_key.lines().nth(1).unwrap().to_owned();
    let alice_body = alice.key_pem.lines().nth(1).unwrap().to_owned();
    for text in [
        format!("{ca:?}"),
        format!("{alice:?}"),
        format!("{ca:#?}{alice:#?}"),
    ] {
        assert!(!text.contains(&ca_body), "{text}");
        assert!(!text.contains(&alice_body), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }
    let bad = Ca::from_pem(ca.cert_pem(), &alice.key_pem).unwrap_err();
    assert!(!format!("{bad:?} {bad}").contains(&alice_body));
}

#[test]
fn identity_of_rejects_garbage() {
    assert!(identity_of(b"").is_err());
    assert!(identity_of(b"\x30\x03\x02\x01\x01").is_err());
    let ca = Ca::generate("prod").unwrap();
    let mut bytes = der(ca.cert_pem());
    bytes.push(0);
    assert!(identity_of(&bytes).is_err());
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn bundles_are_written_with_private_modes_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let ca = Ca::generate("prod").unwrap();
    let alice = ca.issue_client("alice", DAY).unwrap();

    write_bundle(&dir, ca.cert_pem(), &alice, false).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("key.pem")), 0o600);
    assert_eq!(mode(&dir.join("cert.pem")), 0o644);
    assert_eq!(mode(&dir.join("ca.pem")), 0o644);
    assert_eq!(
        std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        ca.cert_pem()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("cert.pem")).unwrap(),
        alice.cert_pem
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("key.pem")).unwrap(),
        *alice.key_pem
    );

    let bundle = read_bundle(&dir).unwrap();
    assert_eq!(bundle.ca_pem, ca.cert_pem());
    assert_eq!(bundle.issued.serial, alice.serial);

    // No overwrite without force, and nothing is touched.
    let bob = ca.issue_client("bob", DAY).unwrap();
    let err = write_bundle(&dir, ca.cert_pem(), &bob, false).unwrap_err();
    assert!(
        matches!(err, PkiError::Exists { ref path } if path.ends_with("ca.pem")),
        "{err}"
    );
    assert_eq!(read_bundle(&dir).unwrap().issued.serial, alice.serial);

    // A single existing file is enough to refuse.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(other.join("key.pem"), "old").unwrap();
    assert!(matches!(
        write_bundle(&other, ca.cert_pem(), &bob, false),
        Err(PkiError::Exists { ref path }) if path.ends_with("key.pem")
    ));
    assert!(!other.join("ca.pem").exists());

    // With force the files are replaced, the key stays 0600, and no
    // temporary files remain; an existing directory keeps its mode.
    std::fs::set_permissions(dir.join("key.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    write_bundle(&dir, ca.cert_pem(), &bob, true).unwrap();
    assert_eq!(read_bundle(&dir).unwrap().issued.serial, bob.serial);
    assert_eq!(mode(&dir.join("key.pem")), 0o600);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    write_bundle(&other, ca.cert_pem(), &bob, true).unwrap();
    assert_eq!(mode(&other), 0o755);
}
