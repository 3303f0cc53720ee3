//! One frame: `u32 BE length ‖ JSON header ‖ u32 BE length ‖ payload bytes`. The payload
//! carries message bodies and secrets, so they are not base64-inflated inside JSON. Both
//! lengths are limited before anything is allocated.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest JSON header.
pub const MAX_HEADER: usize = 1 << 20;
/// Largest payload (a quarantined message, an audit export).
pub const MAX_PAYLOAD: usize = 256 << 20;
/// Largest payload a role process (mx, the portal) sends the vault: passwords, codes,
/// connector secrets — never mail. A larger one is refused before it is read.
pub const MAX_ROLE_PAYLOAD: usize = 1 << 20;

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    header: &T,
    payload: &[u8],
) -> std::io::Result<()> {
    let head = serde_json::to_vec(header).map_err(|e| bad(e.to_string()))?;
    if head.len() > MAX_HEADER || payload.len() > MAX_PAYLOAD {
        return Err(bad("frame too large"));
    }
    w.write_all(&(head.len() as u32).to_be_bytes()).await?;
    w.write_all(&head).await?;
    w.write_all(&(payload.len() as u32).to_be_bytes()).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// Reads one frame.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
) -> std::io::Result<(T, Vec<u8>)> {
    read_frame_within(r, MAX_PAYLOAD).await
}

/// Reads one frame whose payload is at most `max_payload` bytes (and [`MAX_PAYLOAD`]).
pub async fn read_frame_within<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max_payload: usize,
) -> std::io::Result<(T, Vec<u8>)> {
    let n = r.read_u32().await? as usize;
    if n > MAX_HEADER {
        return Err(bad("frame header too large"));
    }
    let mut head = vec![0; n];
    r.read_exact(&mut head).await?;
    let header = serde_json::from_slice(&head).map_err(|e| bad(format!("frame: {e}")))?;
    let n = r.read_u32().await? as usize;
    if n > max_payload.min(MAX_PAYLOAD) {
        return Err(bad(format!(
            "frame payload of {n} bytes is over the limit of {}",
            max_payload.min(MAX_PAYLOAD)
        )));
    }
    let mut payload = vec![0; n];
    r.read_exact(&mut payload).await?;
    Ok((header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_limits_hold() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        write_frame(&mut a, &serde_json::json!({"op": "ping"}), b"body")
            .await
            .unwrap();
        let (got, payload): (serde_json::Value, _) = read_frame(&mut b).await.unwrap();
        assert_eq!(
            (got["op"].as_str(), payload),
            (Some("ping"), b"body".to_vec())
        );
        // A header length over the limit is refused before anything is allocated.
        a.write_all(&(MAX_HEADER as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        assert!(read_frame::<_, serde_json::Value>(&mut b).await.is_err());
    }

    #[tokio::test]
    async fn a_payload_over_the_callers_limit_is_refused_before_it_is_read() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let head = br#"{"op":"x"}"#;
        a.write_all(&(head.len() as u32).to_be_bytes())
            .await
            .unwrap();
        a.write_all(head).await.unwrap();
        // Announces 2 MiB and sends none of it: refused at once, nothing waited for.
        a.write_all(&(2u32 << 20).to_be_bytes()).await.unwrap();
        let e = read_frame_within::<_, serde_json::Value>(&mut b, MAX_ROLE_PAYLOAD)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        // Within the limit, a frame is read.
        let (mut a2, mut b2) = tokio::io::duplex(1 << 16);
        write_frame(&mut a2, &serde_json::json!({"op": "y"}), &[7; 1000])
            .await
            .unwrap();
        let (_, payload): (serde_json::Value, _) =
            read_frame_within(&mut b2, MAX_ROLE_PAYLOAD).await.unwrap();
        assert_eq!(payload.len(), 1000);
    }
}
