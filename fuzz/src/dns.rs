//! The stand-in DNS server's answers: TXT records for SPF, DKIM keys and DMARC of the test
//! domains, `127.0.0.2` for block-list queries under `dnsbl.test`, NXDOMAIN for the rest.

/// An Ed25519 DKIM key (`p=` of a real key pair), served for every `_domainkey` name, so that
/// signature checks reach the cryptography.
const DKIM_KEY: &str = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

const QTYPE_A: u16 = 1;
const QTYPE_TXT: u16 = 16;

/// The reply to one query, or `None` for bytes that are no query.
pub fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let (name, qtype, end) = question(query)?;
    let mut reply = query[..end].to_vec();
    reply[2] = 0x84 | (query[2] & 0x01); // QR, AA, RD copied
    reply[3] = 0x80; // RA, NOERROR
    reply[6..12].fill(0);
    let name = name.to_ascii_lowercase();
    let record = match qtype {
        QTYPE_TXT => txt_for(&name).map(|t| rdata_txt(t.as_bytes())),
        QTYPE_A if name.ends_with(".dnsbl.test") => Some(vec![127, 0, 0, 2]),
        _ => None,
    };
    match record {
        Some(rdata) => {
            reply[7] = 1; // ANCOUNT
            reply.extend_from_slice(&[0xC0, 0x0C]);
            reply.extend_from_slice(&qtype.to_be_bytes());
            reply.extend_from_slice(&[0, 1, 0, 0, 1, 0x2C]);
            reply.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            reply.extend_from_slice(&rdata);
        }
        None => reply[3] |= 3, // NXDOMAIN
    }
    Some(reply)
}

fn txt_for(name: &str) -> Option<&'static str> {
    if name.contains("._domainkey.") {
        Some(DKIM_KEY)
    } else if name.starts_with("_dmarc.") {
        Some("v=DMARC1; p=reject; rua=mailto:dmarc@one.test")
    } else if name.ends_with(".test") {
        Some("v=spf1 ip4:192.0.2.0/24 include:spf.example.test ~all")
    } else {
        None
    }
}

/// The question's name (dotted), type, and where the question section ends.
fn question(q: &[u8]) -> Option<(String, u16, usize)> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut pos = 12;
    let mut name = String::new();
    loop {
        let len = *q.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let label = q.get(pos..pos + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label));
        pos += len;
    }
    let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
    (q.len() >= pos + 4).then_some((name, qtype, pos + 4))
}

fn rdata_txt(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 255 + 1);
    for chunk in text.chunks(255) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    out
}
