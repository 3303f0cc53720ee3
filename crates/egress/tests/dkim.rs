//! Signatures made by `egress::dkim` with keys from `keys::dkim` verify with an independent
//! verifier (mail-auth's), for both algorithms; a changed message fails.

use std::sync::Arc;

use egress::dkim::{DkimSource, sign};
use egress::secrets::BoxFuture;
use mail_auth::{AuthenticatedMessage, DkimResult};
use proto::nouns::DkimAlgorithm;
use proto::vault::DkimKeyRef;
use zeroize::Zeroizing;

/// Holds one key, as the vault would.
struct OneKey {
    algorithm: DkimAlgorithm,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl DkimSource for OneKey {
    fn key(&self, _: i64, domain: &str) -> BoxFuture<'_, Result<Option<DkimKeyRef>, String>> {
        let found = (domain == "signer.test").then(|| DkimKeyRef {
            selector: "s1".into(),
            algorithm: self.algorithm,
        });
        Box::pin(async move { Ok(found) })
    }
    fn sign<'a>(
        &'a self,
        _: i64,
        _: &'a str,
        _: &'a str,
        digest: [u8; 32],
    ) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move { keys::dkim::sign_digest(self.algorithm, &self.pkcs8, &digest) })
    }
}

const MESSAGE: &str = "Received: from a by b\r\nFrom: \"Ann\" <ann@Signer.test>\r\nTo: bob@else.test\r\n\
Subject: quarterly\r\n  figures\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@signer.test>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello  Bob,\r\n\r\nthe figures.\r\n\r\n\r\n";

async fn verify(signed: &[u8], record: &str) -> DkimResult {
    let caches = inspect::dns::DnsCaches::default();
    caches
        .seed_txt("s1._domainkey.signer.test", record)
        .unwrap();
    let auth = mail_auth::MessageAuthenticator::new_cloudflare().unwrap();
    let msg = AuthenticatedMessage::parse(signed).unwrap();
    let out = auth.verify_dkim(caches.params(&msg)).await;
    assert_eq!(out.len(), 1, "one signature");
    out[0].result().clone()
}

#[tokio::test]
async fn both_algorithms_verify_and_a_changed_message_does_not() {
    for algorithm in DkimAlgorithm::ALL.iter().copied() {
        let key = keys::dkim::generate(algorithm).unwrap();
        let record = keys::dkim::dns_value(algorithm, &key.public);
        let source: Arc<dyn DkimSource> = Arc::new(OneKey {
            algorithm,
            pkcs8: key.pkcs8,
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signed = sign(&source, 1, MESSAGE.as_bytes(), now)
            .await
            .unwrap()
            .unwrap();
        assert!(signed.starts_with(b"DKIM-Signature: v=1; a="));
        assert_eq!(
            verify(&signed, &record).await,
            DkimResult::Pass,
            "{algorithm}"
        );
        let text = String::from_utf8(signed).unwrap();
        let body_changed = text.replace("the figures.", "the figures!");
        let r = verify(body_changed.as_bytes(), &record).await;
        assert!(
            matches!(r, DkimResult::Fail(_) | DkimResult::Neutral(_)),
            "{algorithm}: body: {r:?}"
        );
        let header_changed = text.replace("quarterly", "quarterIy");
        assert!(
            matches!(
                verify(header_changed.as_bytes(), &record).await,
                DkimResult::Fail(_)
            ),
            "{algorithm}: subject"
        );
        // A second From (added on the way) breaks the signature: From is oversigned.
        let extra_from = text.replace("To: bob", "From: mallory@else.test\r\nTo: bob");
        assert!(
            matches!(
                verify(extra_from.as_bytes(), &record).await,
                DkimResult::Fail(_)
            ),
            "{algorithm}: extra From"
        );
        // Relaxed canonicalization: re-folded headers and re-spaced body lines still pass.
        let refolded = text
            .replace(
                "Subject: quarterly\r\n  figures",
                "Subject:  quarterly figures",
            )
            .replace("Hello  Bob,", "Hello Bob,  ");
        assert_eq!(
            verify(refolded.as_bytes(), &record).await,
            DkimResult::Pass,
            "{algorithm}: relaxed"
        );
    }
    // Another domain's mail is not signed.
    let key = keys::dkim::generate(DkimAlgorithm::Ed25519).unwrap();
    let source: Arc<dyn DkimSource> = Arc::new(OneKey {
        algorithm: DkimAlgorithm::Ed25519,
        pkcs8: key.pkcs8,
    });
    let other = MESSAGE.replace("Signer.test", "other.test");
    assert!(
        sign(&source, 1, other.as_bytes(), 0)
            .await
            .unwrap()
            .is_none()
    );
}
