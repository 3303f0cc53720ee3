//! `sekisho check-config`: the settings in effect, as TOML one can read and reuse. It starts
//! from every fixed default ([`DEFAULTS`]), lays the file over it key by key, and fills in
//! what follows from other settings or from flags and the environment (host and node names,
//! listeners, data directory, the KEK's path, the DNS resolver). Fed back as `--config`, the
//! output resolves to the same configuration (a test holds it to that).

use anyhow::{Context, Result};
use toml::{Table, Value};

use crate::config::{Config, DEFAULTS};

/// The effective configuration for `cfg`, which was resolved from `file` (its text, if any).
pub fn effective(file: Option<&str>, cfg: &Config) -> Result<String> {
    let mut table: Table = DEFAULTS.parse().context("the built-in defaults")?;
    if let Some(text) = file {
        merge(&mut table, text.parse().context("the configuration file")?);
    }
    let server = section(&mut table, "server");
    server.insert("hostname".into(), cfg.hostname.clone().into());
    server.insert("node_name".into(), cfg.node_name.clone().into());
    server.insert("data_dir".into(), path(&cfg.data_dir));
    server.insert("smtp_listen".into(), cfg.smtp_listen.to_string().into());
    server.insert("admin_listen".into(), cfg.admin_listen.to_string().into());
    server.insert(
        "portal_listen".into(),
        cfg.portal_listen
            .map_or("off".to_string(), |a| a.to_string())
            .into(),
    );
    section(&mut table, "vault").insert("kek_file".into(), path(&cfg.kek_file));
    if let Some(r) = cfg.dns_resolver {
        section(&mut table, "dns").insert("resolver".into(), r.to_string().into());
    }
    let mut out = String::from("# The settings in effect (sekisho check-config).\n");
    if cfg.tls_generated {
        out.push_str(&format!(
            "# [tls]: none set, so a self-signed certificate is generated at {}\n",
            cfg.tls_cert.display()
        ));
    }
    for (name, value) in ordered(table) {
        let mut one = Table::new();
        one.insert(name, value);
        out.push('\n');
        out.push_str(&toml::to_string(&one)?);
    }
    Ok(out)
}

/// `over` laid onto `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn section<'a>(t: &'a mut Table, name: &str) -> &'a mut Table {
    t.entry(name)
        .or_insert_with(|| Value::Table(Table::new()))
        .as_table_mut()
        .expect("a section is a table")
}

fn path(p: &std::path::Path) -> Value {
    p.display().to_string().into()
}

/// The sections in the README's order (`server` first; a table's own keys print sorted).
fn ordered(t: Table) -> Vec<(String, Value)> {
    const ORDER: &[&str] = &[
        "server",
        "tls",
        "limits",
        "delivery",
        "spool",
        "vault",
        "store",
        "blobs",
        "audit",
        "alerts",
        "detect",
        "digest",
        "portal",
        "sandbox",
        "quarantine",
        "trace",
        "dns",
        "malware",
        "inspect",
        "dnsbl",
        "acme",
    ];
    let mut keys: Vec<String> = t.keys().cloned().collect();
    keys.sort_by_key(|k| ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()));
    let mut t = t;
    keys.into_iter()
        .filter_map(|k| t.remove(&k).map(|v| (k, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, RawConfig};

    /// A resolved configuration's Debug form, the policy's hash-map weights in a fixed order.
    fn debug(cfg: &Config) -> String {
        let debug = format!("{cfg:?}");
        let (head, rest) = debug.split_once("weights: {").unwrap();
        let (weights, tail) = rest.split_once('}').unwrap();
        let mut w: Vec<&str> = weights.split(", ").collect();
        w.sort();
        format!("{head}weights: {{{}}}{tail}", w.join(", "))
    }

    fn resolve(text: &str, o: &Overrides) -> Config {
        RawConfig::parse(text).unwrap().resolve(o).unwrap()
    }

    #[test]
    fn the_effective_configuration_resolves_to_the_same_configuration() {
        let file = r#"
[server]
hostname = "mx1.example.net"
shutdown_grace = "20s"
[tls]
cert = "/etc/sekisho/tls/fullchain.pem"
key = "/etc/sekisho/tls/privkey.pem"
[limits]
max_recipients = 50
[inspect]
tag_score = 4.0
protected_brands = ["acme.example"]
[inspect.weights]
MISSING_DATE = 2.0
[[dnsbl]]
zone = "zen.example.org"
kind = "ip"
[detect]
working_hours = "09:00-18:00"
utc_offset = "+09:00"
"#;
        let o = Overrides {
            data_dir: Some("/srv/sekisho".into()),
            smtp_listen: Some("127.0.0.1:2525".into()),
            dns: Some("127.0.0.1:5353".into()),
            ..Overrides::default()
        };
        let cfg = resolve(file, &o);
        let text = effective(Some(file), &cfg).unwrap();
        // Flags and defaults are written out; what the file set is kept.
        for line in [
            "data_dir = \"/srv/sekisho\"",
            "smtp_listen = \"127.0.0.1:2525\"",
            "resolver = \"127.0.0.1:5353\"",
            "max_recipients = 50",
            "max_commands = 10000",
            "MISSING_DATE = 2.0",
            "zone = \"zen.example.org\"",
            "kek_file = \"/srv/sekisho.vault/kek\"",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(text.find("[server]").unwrap() < text.find("[limits]").unwrap());
        // Read back with no flag at all, it is the same configuration.
        let again = resolve(&text, &Overrides::default());
        assert_eq!(debug(&again), debug(&cfg));
    }

    #[test]
    fn without_a_file_it_is_the_defaults_and_says_the_certificate_is_generated() {
        let o = Overrides {
            data_dir: Some("/srv/d".into()),
            ..Overrides::default()
        };
        let cfg = resolve("", &o);
        let text = effective(None, &cfg).unwrap();
        assert!(text.contains("a self-signed certificate is generated at /srv/d/tls/cert.pem"));
        let again = resolve(&text, &Overrides::default());
        assert_eq!(debug(&again), debug(&cfg));
    }
}
