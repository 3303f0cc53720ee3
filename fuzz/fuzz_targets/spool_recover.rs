//! Spool recovery from arbitrary segment bytes: opening a spool whose segment is the input
//! never panics, and every message it lists can be read back, or is marked corrupt (its
//! content frame was lost) for the operator. Half the inputs are raw
//! segment bytes (the frame scanner, resynchronisation, moving damage aside); the other half
//! are frames sealed properly around arbitrary plaintext (the decoders behind the seal).
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use spool::{Spool, SpoolKey, SpoolOptions};

fn key() -> SpoolKey {
    SpoolKey::from_bytes([7; 32])
}

/// `kind u8 | len u16 LE | plaintext`, repeated.
fn sealed(mut data: &[u8]) -> Vec<u8> {
    let mut frames = Vec::new();
    while let [kind, a, b, rest @ ..] = data {
        let len = (u16::from_le_bytes([*a, *b]) as usize).min(rest.len());
        frames.push((1 + kind % 3, &rest[..len]));
        data = &rest[len..];
    }
    spool::sealed_segment(&key(), &frames)
}

fn scratch() -> std::path::PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!(
        "sekisho-fuzz-spool-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let segment = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        sealed(rest)
    };
    let dir = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(spool::log::segment_path(&dir, 1), &segment).unwrap();
    let opened = Spool::open(&dir, key(), None, SpoolOptions::default());
    if let Ok((spool, report)) = opened {
        let listed = spool.list();
        assert_eq!(listed.len(), report.messages, "report and queue disagree");
        for m in &listed {
            let readable = spool.body(&m.id).is_ok();
            assert!(
                readable || m.state == spool::QueueState::Corrupt,
                "listed message {:?} is unreadable and not marked corrupt",
                m.id
            );
        }
        spool.shutdown();
    }
    std::fs::remove_dir_all(&dir).unwrap();
});
