//! What mx writes at delivery from a message anyone can send: the DKIM signature of an
//! outbound message and the ARC set of an inbound one, from arbitrary header blocks and
//! bodies. A panic here would kill delivery on every retry of the same queued message, so
//! every input must give a well-formed field or nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::nouns::DkimAlgorithm;
use proto::vault::DkimKeyRef;

const AUTHSERV_ID: &str = "mx.sekisho.test";

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    // Half the inputs carry our own results, so the ARC path runs past its first question.
    let mut message = Vec::with_capacity(rest.len() + 64);
    if pick & 1 == 1 {
        message.extend_from_slice(b"Authentication-Results: mx.sekisho.test;\r\n\tarc=pass\r\n");
    }
    message.extend_from_slice(rest);
    let key = DkimKeyRef {
        selector: "s1".into(),
        algorithm: if pick & 2 == 2 {
            DkimAlgorithm::Ed25519
        } else {
            DkimAlgorithm::Rsa
        },
    };
    if let Some(unsigned) = egress::dkim::prepare(&message, "acme.test", &key, 0) {
        let field = unsigned.header(&[7; 64]);
        assert!(field.starts_with(b"DKIM-Signature: ") && field.ends_with(b"\r\n"));
    }
    if let Some(set) = egress::arc::next_set(&message, AUTHSERV_ID) {
        assert!((1..=egress::arc::MAX_INSTANCES).contains(&set.instance));
        let ams = egress::arc::message_signature(&message, &set, "acme.test", &key, 0);
        let ams_field = ams.header(&[7; 64]);
        let seal = egress::arc::seal(&message, &set, &ams_field, "acme.test", &key, 0);
        let seal_field = seal.header(&[7; 64]);
        assert!(seal_field.starts_with(b"ARC-Seal: i=") && seal_field.ends_with(b"\r\n"));
    }
});
