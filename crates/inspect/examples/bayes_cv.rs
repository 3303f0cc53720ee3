//! Cross-validates the two classifiers alone (naive Bayes and the byte n-gram logistic
//! regression) on a corpus of ham and spam directories:
//! `cargo run --release -p inspect --example bayes_cv -- HAM_DIR... -- SPAM_DIR...`.
//! Prints, per threshold, spam recall and ham false positives of each — the quick loop for
//! tokenizer and feature work (`bench/quality` measures the whole pipeline through the real
//! binary, in the order `sekisho train` learns).

use std::collections::HashSet;
use std::path::PathBuf;

use inspect::bayes::{Model, token_hash, tokenize};
use inspect::ngram::{Weights, features};
use inspect::view::{MessageView, ViewLimits};

fn load(dirs: &[PathBuf]) -> Vec<(String, HashSet<String>, Vec<u32>)> {
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
            let tokens = tokenize(&view);
            let feats = features(&raw, &tokens);
            out.push((
                f.file_name().unwrap().to_string_lossy().into_owned(),
                tokens,
                feats,
            ));
        }
    }
    out
}

fn fold(name: &str, folds: u64) -> u64 {
    token_hash(name) % folds
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
    // Per held-out message: (Bayes probability, n-gram probability, name).
    let (mut ps_spam, mut ps_ham) = (Vec::new(), Vec::new());
    for k in 0..folds {
        let mut m = Model::default();
        let mut w = Weights::default();
        // Learn in `sekisho train`'s order: by a hash of the name, classes interleaved.
        let mut train: Vec<_> = ham
            .iter()
            .map(|x| (x, false))
            .chain(spam.iter().map(|x| (x, true)))
            .filter(|((n, _, _), _)| fold(n, folds) != k)
            .collect();
        train.sort_by_key(|((n, _, _), _)| token_hash(n));
        for ((_, t, _), is_spam) in &train {
            m.train(t, *is_spam);
        }
        for pass in 0..inspect::ngram::PASSES {
            for ((_, _, f), is_spam) in &train {
                w.learn(f, *is_spam, pass);
            }
        }
        for (set, out) in [(&ham, &mut ps_ham), (&spam, &mut ps_spam)] {
            for (n, t, f) in set.iter().filter(|(n, _, _)| fold(n, folds) == k) {
                out.push((m.classify(t).unwrap_or(0.5), w.predict(f), n.clone()));
                if std::env::var("DEBUG").is_ok_and(|d| n.starts_with(&d)) {
                    let mut v: Vec<(f64, &String, u32, u32)> = t
                        .iter()
                        .filter_map(|tok| {
                            let &(s, h) = m.tokens.get(&token_hash(tok))?;
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
    type Pick = fn(&(f64, f64, String)) -> f64;
    let classifiers: [(&str, Pick); 2] = [("bayes", |x| x.0), ("n-gram", |x| x.1)];
    for (name, pick) in classifiers {
        for th in [0.6, 0.8, 0.9, 0.95, 0.99, 0.999] {
            let caught = ps_spam.iter().filter(|x| pick(x) >= th).count();
            let fp = ps_ham.iter().filter(|x| pick(x) >= th).count();
            println!(
                "{name:<6} p >= {th:<6} recall {:5.1} %  false positives {fp} ({:.2} %)",
                caught as f64 * 100.0 / ps_spam.len() as f64,
                fp as f64 * 100.0 / ps_ham.len() as f64
            );
        }
    }
    let mut missed: Vec<_> = ps_spam.iter().filter(|x| x.0 < 0.95 && x.1 < 0.9).collect();
    missed.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (b, n, name) in missed.iter().take(15) {
        println!("missed by both: bayes {b:.3} n-gram {n:.3} {name}");
    }
}
