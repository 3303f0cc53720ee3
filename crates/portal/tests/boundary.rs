//! The portal's trust boundary is a crate boundary: it can reach `proto` and web crates, never
//! a crate that holds keys, opens the store, delivers or spools mail. Checked over the
//! resolved dependency graph (`cargo metadata`, offline, for this host), so a dependency added
//! anywhere below the portal fails here.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

/// Workspace crates the portal must never reach.
const FORBIDDEN: &[&str] = &[
    "keys", "vault", "store", "egress", "spool", "ingress", "inspect", "sekisho",
];

fn host() -> String {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("a host line")
        .to_string()
}

/// Crate name → the names of its normal (not dev, not build) dependencies, resolved.
fn graph() -> HashMap<String, Vec<String>> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(manifest)
        .args(["--filter-platform", &host()])
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let name_of: HashMap<&str, &str> = doc["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut g = HashMap::new();
    for node in doc["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let id = node["id"].as_str().unwrap();
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| name_of[d["pkg"].as_str().unwrap()].to_string())
            .collect();
        g.insert(name_of[id].to_string(), deps);
    }
    g
}

fn reachable(g: &HashMap<String, Vec<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(c) = todo.pop() {
        for d in g.get(&c).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_portal_reaches_no_crate_that_holds_keys_or_the_store() {
    let g = graph();
    let portal = reachable(&g, "portal");
    assert!(
        portal.contains("proto"),
        "the portal speaks proto: {portal:?}"
    );
    assert!(portal.contains("axum"), "the graph was read: {portal:?}");
    let bad: Vec<&&str> = FORBIDDEN.iter().filter(|c| portal.contains(**c)).collect();
    assert!(bad.is_empty(), "the portal can reach {bad:?}");
    // proto itself holds nothing: no keys, no store, no I/O crates of ours.
    let proto = reachable(&g, "proto");
    let bad: Vec<&&str> = FORBIDDEN.iter().filter(|c| proto.contains(**c)).collect();
    assert!(bad.is_empty(), "proto can reach {bad:?}");
    // The check is not blind: the binary reaches everything.
    assert!(reachable(&g, "sekisho").contains("vault"));
}
