//! The portal's request front door and everything behind it up to the vault: an arbitrary
//! request (method, target, header fields, body) through the real router — limits, path and
//! NUL checks, rate and probe bookkeeping, routing, extractors, the handlers' own checks. The
//! vault is absent, so every act fails as it does when the vault is down. No request makes
//! the portal panic or answer 500, and every answer carries the security headers.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use portal::listener::ClientAddr;
use tower::ServiceExt;

fn router() -> axum::Router {
    static ROUTER: OnceLock<axum::Router> = OnceLock::new();
    ROUTER
        .get_or_init(|| {
            // The rate and probe limits are tested on their own; here they would only turn
            // every later input into a 429.
            let limits = portal::front::Limits {
                rate: 1e12,
                burst: 1e12,
                logins_per_minute: 1e12,
                probe_threshold: u32::MAX,
                ..Default::default()
            };
            let p = portal::Portal {
                vault: proto::client::VaultClient::new(
                    "/nonexistent/sekisho-fuzz/vault.sock".into(),
                ),
                front: portal::front::FrontDoor::new(limits),
            };
            portal::api::router(Arc::new(p))
        })
        .clone()
}

/// `METHOD TARGET\n` then `Name: value\n` lines up to an empty line, then the body.
fn request(data: &[u8]) -> Option<Request<Body>> {
    let mut lines = data.splitn(2, |&b| b == b'\n');
    let first = lines.next()?;
    let mut rest = lines.next().unwrap_or_default();
    let (method, target) = {
        let sp = first.iter().position(|&b| b == b' ')?;
        (&first[..sp], &first[sp + 1..])
    };
    let mut builder = Request::builder()
        .method(axum::http::Method::from_bytes(method).ok()?)
        .uri(axum::http::Uri::try_from(target).ok()?);
    loop {
        let (line, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => (&rest[..nl], &rest[nl + 1..]),
            None => (rest, &[][..]),
        };
        rest = after;
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        builder = builder.header(&line[..colon], value);
    }
    let mut req = builder.body(Body::from(rest.to_vec())).ok()?;
    req.extensions_mut()
        .insert(ConnectInfo(ClientAddr("192.0.2.9:40000".parse().unwrap())));
    Some(req)
}

fuzz_target!(init: sekisho_fuzz::tolerate_caught_panics(), |data: &[u8]| {
    let Some(req) = request(data) else {
        return;
    };
    let resp = sekisho_fuzz::runtime()
        .block_on(router().oneshot(req))
        .expect("infallible");
    assert_ne!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR, "500 for a request");
    assert!(
        resp.headers().contains_key("content-security-policy"),
        "an answer without the security headers"
    );
});
