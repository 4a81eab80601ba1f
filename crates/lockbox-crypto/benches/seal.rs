//! Seal and open (XChaCha20-Poly1305 under the current data key, with associated data) at the
//! sizes the store sees: a small log entry, a typical secret, and the largest secret allowed.
//!
//! `cargo bench -p lockbox-crypto --bench seal`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lockbox_crypto::Keyring;

fn seal_open(c: &mut Criterion) {
    let keyring = Keyring::generate();
    let aad = b"log:123456";
    let mut group = c.benchmark_group("keyring");
    for size in [64usize, 1024, 16 * 1024, 500 * 1024 - 1] {
        let plain = vec![0x5au8; size];
        let sealed = keyring.seal(aad, &plain);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", size), &plain, |b, p| {
            b.iter(|| keyring.seal(black_box(aad), black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, s| {
            b.iter(|| keyring.open(black_box(aad), black_box(s)).expect("opens"))
        });
    }
    group.finish();
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
