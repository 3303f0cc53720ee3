//! STARTTLS with certificate verification against a test CA made with rcgen.
//!
//! Two real `sekisho serve` processes: a "downstream" node whose SMTP certificate is issued by
//! the test CA (it delivers its demo tenant into a Maildir), and a "gateway" node whose tenant
//! routes to the downstream with `tls=required&ca=<test CA>`. A message sent to the gateway
//! must arrive over verified TLS. A gateway that trusts a different CA must not deliver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

const BIN: &str = env!("CARGO_BIN_EXE_sekisho");

struct NodeProc {
    child: Child,
    smtp_port: u16,
    data_dir: PathBuf,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DNS server on loopback that answers NXDOMAIN to every query, so the nodes' authentication
/// checks finish at once and no query leaves the machine. Returns its address.
fn nxdomain_server() -> std::net::SocketAddr {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            // Header + the question only: find the end of QNAME, then QTYPE and QCLASS.
            let mut pos = 12;
            while pos < n && buf[pos] != 0 {
                pos += 1 + buf[pos] as usize;
            }
            let end = (pos + 5).min(n);
            let mut reply = buf[..end].to_vec();
            if reply.len() < 12 {
                continue;
            }
            reply[2] = 0x84 | (buf[2] & 0x01); // QR, AA, RD copied
            reply[3] = 0x03; // NXDOMAIN
            reply[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
            let _ = sock.send_to(&reply, peer);
        }
    });
    addr
}

fn start(dir: &Path, name: &str, config: &str, demo: bool) -> NodeProc {
    static DNS: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();
    let dns = DNS.get_or_init(nxdomain_server);
    let config = format!("[dns]\nresolver = \"{dns}\"\ntimeout = \"1s\"\n{config}");
    let data_dir = dir.join(name);
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, &config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .args([
        "serve",
        "--smtp-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--portal-listen",
        "127.0.0.1:0",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if demo {
        cmd.arg("--demo");
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut smtp_port = 0;
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "{name} exited early");
        if let Some(rest) = line.strip_prefix("smtp listening on 127.0.0.1:") {
            smtp_port = rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        if line.starts_with("data directory") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    NodeProc {
        child,
        smtp_port,
        data_dir,
    }
}

fn cli(node: &NodeProc, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["--data-dir", node.data_dir.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn add_demo_tenant(node: &NodeProc, route: &str) {
    cli(
        node,
        &[
            "tenant",
            "add",
            "demo",
            "--domain",
            "demo.test",
            "--route",
            route,
        ],
    );
}

/// A plain SMTP client: sends one message and returns the final reply line.
fn send(port: u16, rcpt: &str, body: &str) -> String {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut reply = || {
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            if l.as_bytes().get(3) != Some(&b'-') {
                return l;
            }
        }
    };
    assert!(reply().starts_with("220"));
    for cmd in [
        "EHLO client.test\r\n".to_string(),
        "MAIL FROM:<a@example.org>\r\n".to_string(),
        format!("RCPT TO:<{rcpt}>\r\n"),
        "DATA\r\n".to_string(),
    ] {
        w.write_all(cmd.as_bytes()).unwrap();
        let line = reply();
        assert!(
            line.starts_with('2') || line.starts_with('3'),
            "{cmd:?} -> {line}"
        );
    }
    w.write_all(format!("{body}\r\n.\r\n").as_bytes()).unwrap();
    let done = reply();
    w.write_all(b"QUIT\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = w.read_to_end(&mut rest);
    done
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

#[test]
fn starttls_verified_against_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca("Sekisho Test CA");
    let other_ca = make_ca("Some Other CA");
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("leaf.pem"), leaf.pem()).unwrap();
    std::fs::write(p("leaf.key"), leaf_key.serialize_pem()).unwrap();
    std::fs::write(p("ca.pem"), ca.pem()).unwrap();
    std::fs::write(p("other-ca.pem"), other_ca.pem()).unwrap();

    let tls_cfg = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        p("leaf.pem").display(),
        p("leaf.key").display()
    );
    let downstream = start(dir.path(), "downstream", &tls_cfg, true);
    let fast_retry = "[delivery]\nretry_initial = \"1h\"\nretry_max = \"1h\"\ntimeout = \"5s\"\n";
    let gateway = start(dir.path(), "gateway", fast_retry, false);
    let route = format!(
        "smtp://localhost:{}?tls=required&ca={}",
        downstream.smtp_port,
        p("ca.pem").display()
    );
    add_demo_tenant(&gateway, &route);

    let reply = send(
        gateway.smtp_port,
        "alice@demo.test",
        "Subject: verified\r\n\r\nhello",
    );
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let maildir = downstream.data_dir.join("maildir/alice@demo.test/new");
    // (The downstream is a demo node: its own sample mail is in the same Maildir.)
    let content = wait_until("delivery to the downstream", || {
        std::fs::read_dir(&maildir)
            .ok()?
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .find(|c| c.ends_with("Subject: verified\r\n\r\nhello\r\n"))
    });
    // The downstream's Received header (first) proves the hop from the gateway was TLS 1.3.
    let first = content
        .split("\r\n\t")
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(first.contains("with ESMTPS"), "{content}");
    assert!(content.contains("version=TLSv1.3"), "{content}");
    assert!(content.ends_with("Subject: verified\r\n\r\nhello\r\n"));

    // A gateway trusting another CA refuses the certificate and keeps the message queued.
    let strict = start(dir.path(), "strict", fast_retry, false);
    let wrong = format!(
        "smtp://localhost:{}?tls=required&ca={}",
        downstream.smtp_port,
        p("other-ca.pem").display()
    );
    add_demo_tenant(&strict, &wrong);
    let reply = send(
        strict.smtp_port,
        "bob@demo.test",
        "Subject: must not leak\r\n\r\nx",
    );
    assert!(reply.starts_with("250 "), "{reply}");
    let queued: serde_json::Value = wait_until("a deferred message", || {
        let v: serde_json::Value =
            serde_json::from_str(&cli(&strict, &["queue", "list", "--json"])).ok()?;
        (v[0]["state"] == "deferred").then_some(v)
    });
    let last = queued[0]["envelope"]["rcpts"][0]["last_reply"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last.contains("TLS handshake"), "{last}");
    assert!(
        last.to_lowercase().contains("certificate") || last.contains("UnknownIssuer"),
        "{last}"
    );
    assert!(!downstream.data_dir.join("maildir/bob@demo.test").exists());
}
