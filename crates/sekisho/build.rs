//! Bakes the resolved dependency set (name and version of every package in the workspace's
//! `Cargo.lock`) into the binary, so `sekisho surface` can say what it was built from and a
//! baseline can tell when that changed.

fn main() {
    let lock = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");
    println!("cargo::rerun-if-changed={lock}");
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if line == "[[package]]" {
            name = None;
        } else if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            out.push(format!("{n} {}", v.trim_matches('"')));
        }
    }
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("deps.txt");
    std::fs::write(dest, out.join("\n")).expect("write deps.txt");
}
