//! The store end to end: Raft over redb, snapshots and compaction, reopen, concurrency, keys.

use std::sync::{Arc, RwLock};

use lockbox_crypto::{Keyring, SecretBytes};
use lockbox_store::{Store, StoreConfig, StoreError};
use lockbox_types::{Command, Meta, Outcome, Secret, SecretSpec, Timestamp};

fn secret(i: usize) -> Command {
    Command::CreateSecret {
        secret: Box::new(Secret {
            id: format!("{i:025}"),
            meta: Meta {
                version: 0,
                created_at: Timestamp(i as i64),
                updated_at: Timestamp(i as i64),
            },
            spec: SecretSpec {
                name: format!("s{i}"),
                data: SecretBytes::new(format!("value-{i}").into_bytes()),
                ..Default::default()
            },
        }),
    }
}

fn config(dir: &std::path::Path, interval: u64) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.snapshot_interval = interval;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_compact_the_log_and_reopen_restores_everything() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(RwLock::new(Keyring::generate()));
    let store = Store::open(config(dir.path(), 20), keyring.clone())
        .await
        .unwrap();
    for i in 0..100 {
        assert!(matches!(
            store.propose(secret(i)).await.unwrap(),
            Outcome::Applied { .. }
        ));
    }
    // Snapshots are built in the background; wait for one that covers most of the writes.
    let mut stats = store.stats();
    for _ in 0..100 {
        if stats.snapshot.unwrap_or(0) >= 80 && stats.purged.unwrap_or(0) >= 80 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stats = store.stats();
    }
    assert!(stats.snapshot.unwrap_or(0) >= 80, "{stats:?}");
    assert!(
        stats.purged.unwrap_or(0) >= 80,
        "the log must be compacted: {stats:?}"
    );
    let before = store.read(|s| s.clone());
    store.shutdown().await.unwrap();
    drop(store);

    let store = Store::open(config(dir.path(), 20), keyring).await.unwrap();
    let after = store.read(|s| s.clone());
    assert_eq!(before.secrets, after.secrets);
    assert_eq!(after.secrets.len(), 100);
    assert_eq!(
        after
            .secret_by_name("S42")
            .map(|s| s.spec.data.expose().to_vec()),
        Some(b"value-42".to_vec())
    );
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_get_distinct_increasing_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(
            config(dir.path(), 10_000),
            Arc::new(RwLock::new(Keyring::generate())),
        )
        .await
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = store.clone();
        tasks.push(tokio::spawn(
            async move { s.propose(secret(i)).await.unwrap() },
        ));
    }
    let mut versions = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Outcome::Applied { version } => versions.push(version),
            other => panic!("{other:?}"),
        }
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 64);
    store.read(|s| {
        assert_eq!(s.secrets.len(), 64);
        for sec in s.secrets.values() {
            assert!(versions.contains(&sec.meta.version));
        }
    });
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_key_cannot_open_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        config(dir.path(), 10_000),
        Arc::new(RwLock::new(Keyring::generate())),
    )
    .await
    .unwrap();
    store.propose(secret(1)).await.unwrap();
    store.shutdown().await.unwrap();
    drop(store);
    let err = Store::open(
        config(dir.path(), 10_000),
        Arc::new(RwLock::new(Keyring::generate())),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::Raft(_) | StoreError::Corrupt { .. }),
        "{err:?}"
    );
    assert!(text.contains("tampered"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseal_moves_every_record_to_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(RwLock::new(Keyring::generate()));
    let store = Store::open(config(dir.path(), 10_000), keyring.clone())
        .await
        .unwrap();
    for i in 0..30 {
        store.propose(secret(i)).await.unwrap();
    }
    assert_eq!(store.key_ids_in_use().unwrap(), vec![1]);
    let new = keyring.write().unwrap().rotate();
    store.propose(secret(100)).await.unwrap();
    store.reseal().await.unwrap();
    assert_eq!(store.key_ids_in_use().unwrap(), vec![new]);
    keyring.write().unwrap().retire_old();
    store.shutdown().await.unwrap();
    drop(store);
    let store = Store::open(config(dir.path(), 10_000), keyring)
        .await
        .unwrap();
    assert_eq!(store.read(|s| s.secrets.len()), 31);
    store.shutdown().await.unwrap();
}
