//! Request bodies: JSON within the front door's limit, or a problem saying what is wrong.

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A JSON body within the front door's size limit, or a problem saying what is wrong with it.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, Problem> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "JSON expected",
                "send the body as application/json",
            ));
        }
        let max = crate::front::Limits::default().max_body;
        let bytes: Bytes = axum::body::to_bytes(req.into_body(), max)
            .await
            .map_err(|_| crate::front::too_large(max))?;
        if crate::front::json_has_nul(&bytes) {
            return Err(crate::front::nul_refused());
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| Problem::bad_request(format!("the JSON body does not fit: {e}")))
    }
}
