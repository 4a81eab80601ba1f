//! The store's apply path.
//!
//! - `state/apply_create`: `State::apply` of a secret create into a state already holding
//!   N secrets (the deterministic in-memory step every replica runs).
//! - `state/encode_seal`: what the log append does to an entry before redb: postcard encoding
//!   of the command and sealing with the data key.
//! - `store/propose_create`: `Store::propose` end to end on a real store in a temporary
//!   directory: Raft append, redb commit with `Durability::Immediate` (one fsync), apply.
//!   Bound below by the disk's fdatasync latency.
//!
//! `cargo bench -p lockbox-store --bench apply`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use lockbox_crypto::{Keyring, SecretBytes};
use lockbox_store::{State, Store, StoreConfig};
use lockbox_types::{Command, Meta, Secret, SecretSpec, Timestamp};

fn create(i: u64) -> Command {
    Command::CreateSecret {
        secret: Box::new(Secret {
            id: format!("{i:025}"),
            meta: Meta {
                version: 0,
                created_at: Timestamp(1_700_000_000_000_000_000),
                updated_at: Timestamp(1_700_000_000_000_000_000),
            },
            spec: SecretSpec {
                name: format!("bench-secret-{i}"),
                labels: [("env".to_string(), "prod".to_string())].into(),
                data: SecretBytes::new(vec![b'x'; 64]),
                ..Default::default()
            },
        }),
    }
}

fn state_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("state");
    for existing in [0u64, 40_000] {
        let mut base = State::default();
        for i in 0..existing {
            base.apply(i + 1, &create(i));
        }
        let next = AtomicU64::new(existing);
        group.bench_with_input(
            BenchmarkId::new("apply_create", existing),
            &existing,
            |b, _| {
                b.iter_batched_ref(
                    || {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        (create(1_000_000 + i), i)
                    },
                    |(cmd, i)| base.apply(black_box(2_000_000 + *i), black_box(cmd)),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    let keyring = Keyring::generate();
    let cmd = create(7);
    group.bench_function("encode_seal", |b| {
        b.iter(|| {
            let plain = postcard::to_allocvec(black_box(&cmd)).expect("encodes");
            keyring.seal(b"log:123456", &plain)
        })
    });
    group.finish();
}

fn store_propose(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt
        .block_on(Store::open(
            StoreConfig::new(dir.path()),
            Arc::new(RwLock::new(Keyring::generate())),
        ))
        .expect("store opens");
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("store");
    group.sample_size(20);
    group.bench_function("propose_create", |b| {
        b.iter(|| {
            let i = next.fetch_add(1, Ordering::Relaxed);
            rt.block_on(store.propose(create(i))).expect("applied")
        })
    });
    group.finish();
    rt.block_on(store.shutdown()).expect("shutdown");
}

criterion_group!(benches, state_apply, store_propose);
criterion_main!(benches);
