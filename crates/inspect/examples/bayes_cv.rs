//! Cross-validates the Bayes classifier alone on a corpus of ham and spam directories:
//! `cargo run --release -p inspect --example bayes_cv -- HAM_DIR... -- SPAM_DIR...`.
//! Prints, per threshold, spam recall and ham false positives — the quick loop for tokenizer
//! work (`bench/quality` measures the whole pipeline through the real binary).

use std::collections::HashSet;
use std::path::PathBuf;

use inspect::bayes::{Model, tokenize};
use inspect::view::{MessageView, ViewLimits};

fn load(dirs: &[PathBuf]) -> Vec<(String, HashSet<String>)> {
    let mut out = Vec::new();
    for d in dirs {
        let mut files: Vec<_> = std::fs::read_dir(d)
            .expect("corpus directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            let raw = std::fs::read(&f).expect("message");
            let (view, _) = MessageView::parse(&raw, &ViewLimits::default());
            out.push((
                f.file_name().unwrap().to_string_lossy().into_owned(),
                tokenize(&view),
            ));
        }
    }
    out
}

fn fold(name: &str, folds: u64) -> u64 {
    inspect::bayes::token_hash(name) % folds
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args
        .iter()
        .position(|a| a == "--")
        .expect("HAM... -- SPAM...");
    let ham = load(&args[..split].iter().map(PathBuf::from).collect::<Vec<_>>());
    let spam = load(
        &args[split + 1..]
            .iter()
            .map(PathBuf::from)
            .collect::<Vec<_>>(),
    );
    assert!(!ham.is_empty() && !spam.is_empty(), "empty corpus");
    let folds = 5;
    let (mut ps_spam, mut ps_ham) = (Vec::new(), Vec::new());
    for k in 0..folds {
        let mut m = Model::default();
        for (n, t) in &ham {
            if fold(n, folds) != k {
                m.train(t, false);
            }
        }
        for (n, t) in &spam {
            if fold(n, folds) != k {
                m.train(t, true);
            }
        }
        for (n, t) in &ham {
            if fold(n, folds) == k {
                ps_ham.push((m.classify(t).unwrap_or(0.5), n.clone()));
            }
        }
        for (n, t) in &spam {
            if fold(n, folds) == k {
                ps_spam.push((m.classify(t).unwrap_or(0.5), n.clone()));
                if std::env::var("DEBUG").is_ok_and(|d| n.starts_with(&d)) {
                    let mut v: Vec<(f64, &String, u32, u32)> = t
                        .iter()
                        .filter_map(|tok| {
                            let &(s, h) = m.tokens.get(&inspect::bayes::token_hash(tok))?;
                            let ps = f64::from(s) / m.spam_msgs as f64;
                            let ph = f64::from(h) / m.ham_msgs as f64;
                            Some((ps / (ps + ph), tok, s, h))
                        })
                        .collect();
                    v.sort_by(|a, b| a.0.total_cmp(&b.0));
                    for x in v.iter().take(25) {
                        println!("  {:.3} {} s{} h{}", x.0, x.1, x.2, x.3);
                    }
                }
            }
        }
    }
    println!("{} ham, {} spam", ps_ham.len(), ps_spam.len());
    for th in [0.6, 0.8, 0.9, 0.95, 0.99, 0.999] {
        let recall = ps_spam.iter().filter(|(p, _)| *p >= th).count() as f64 / ps_spam.len() as f64;
        let fp = ps_ham.iter().filter(|(p, _)| *p >= th).count();
        println!(
            "p >= {th:<6} recall {:5.1} %  false positives {fp} ({:.2} %)",
            recall * 100.0,
            fp as f64 * 100.0 / ps_ham.len() as f64
        );
    }
    let mut missed: Vec<_> = ps_spam.iter().filter(|(p, _)| *p < 0.95).collect();
    missed.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (p, n) in missed.iter().take(15) {
        println!("missed {p:.3} {n}");
    }
}
