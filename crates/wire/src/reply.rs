//! SMTP replies with enhanced status codes (RFC 3463).

use std::fmt;

/// One SMTP reply: code, enhanced status code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// Enhanced status code, e.g. `"5.1.1"`.
    pub status: &'static str,
    /// Human-readable text (one line, no CR/LF).
    pub text: String,
}

impl Reply {
    /// A reply from its parts.
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Self {
        let text = text.into().replace(['\r', '\n'], " ");
        Self { code, status, text }
    }

    /// True for 4xx and 5xx replies (they count towards the error limit).
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends the wire form (`CODE STATUS TEXT\r\n`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status.is_empty() {
            write!(f, "{} {}", self.code, self.text)
        } else {
            write!(f, "{} {} {}", self.code, self.status, self.text)
        }
    }
}
