//! Recovery after arbitrary damage: whatever truncation or corruption hits a segment, opening
//! the spool never panics, and every acknowledged message whose frames were not touched comes
//! back whole (the scanner resynchronises past damage instead of stopping at it).

use std::fs;
use std::path::{Path, PathBuf};

mod common;

use proptest::prelude::*;
use spool::{MessageMeta, Spool, SpoolKey, SpoolOptions};

fn meta(n: usize, size: usize) -> MessageMeta {
    MessageMeta {
        size: size as u64,
        ..common::meta(n)
    }
}

fn open(dir: &Path) -> (Spool, spool::RecoveryReport) {
    Spool::open(
        dir,
        SpoolKey::from_bytes([5; 32]),
        None,
        SpoolOptions {
            max_segment_bytes: 64 << 20,
        },
    )
    .expect("the spool opens whatever its segments hold")
}

/// What happens to the segment.
#[derive(Debug, Clone)]
enum Damage {
    /// Cut at this fraction (per mille) of its length.
    Truncate(u16),
    /// Octets overwritten: (position per mille, value).
    Overwrite(Vec<(u16, u8)>),
    /// A run of zeros (a torn page): start per mille, length.
    Zeros(u16, u16),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0u16..=1000).prop_map(Damage::Truncate),
        prop::collection::vec((0u16..1000, any::<u8>()), 1..8).prop_map(Damage::Overwrite),
        (0u16..1000, 1u16..600).prop_map(|(at, len)| Damage::Zeros(at, len)),
    ]
}

fn at(permille: u16, len: usize) -> usize {
    len * permille as usize / 1000
}

/// Applies `d` to `bytes`; returns the damaged ranges (start, end) of the original offsets.
fn apply(d: &Damage, bytes: &mut Vec<u8>) -> Vec<(usize, usize)> {
    let len = bytes.len();
    match d {
        Damage::Truncate(p) => {
            let t = at(*p, len);
            bytes.truncate(t);
            vec![(t, usize::MAX)]
        }
        Damage::Overwrite(list) => list
            .iter()
            .filter_map(|(p, v)| {
                let i = at(*p, len).min(len - 1);
                (bytes[i] != *v).then(|| {
                    bytes[i] = *v;
                    (i, i + 1)
                })
            })
            .collect(),
        Damage::Zeros(p, n) => {
            let start = at(*p, len);
            let end = (start + *n as usize).min(len);
            bytes[start..end].fill(0);
            vec![(start, end)]
        }
    }
}

fn scratch() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

fn write_messages(dir: &Path, bodies: &[Vec<u8>]) -> Vec<(String, usize, usize)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (spool, _) = open(dir);
    let segment = spool::log::segment_path(dir, 1);
    let mut out = Vec::new();
    let mut end = 0;
    for (n, body) in bodies.iter().enumerate() {
        let m = meta(n, body.len());
        let id = m.id.clone();
        rt.block_on(spool.submit(m, body, false)).expect("submit");
        let start = end;
        end = fs::metadata(&segment).expect("segment").len() as usize;
        out.push((id, start, end));
    }
    spool.shutdown();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn intact_messages_survive_any_damage(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..10),
        d in damage(),
    ) {
        let dir = scratch();
        let written = write_messages(dir.path(), &bodies);
        let segment = spool::log::segment_path(dir.path(), 1);
        let mut bytes = fs::read(&segment).unwrap();
        let hit = apply(&d, &mut bytes);
        fs::write(&segment, &bytes).unwrap();

        let (spool, report) = open(dir.path());
        let mut intact = 0;
        for ((id, start, end), body) in written.iter().zip(&bodies) {
            if hit.iter().any(|&(a, b)| a < *end && *start < b) {
                continue;
            }
            intact += 1;
            prop_assert!(spool.get(id).is_some(), "intact message {} lost after {:?}", id, d);
            prop_assert_eq!(&spool.body(id).unwrap(), body);
        }
        prop_assert!(report.messages >= intact);
        spool.shutdown();
    }
}
