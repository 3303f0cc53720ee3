//! The DATA body receiver: dot-unstuffing, end detection and content checks.
//!
//! Only `<CRLF>.<CRLF>` ends the body. A bare `LF` never starts a new line for the purpose
//! of dot handling, so none of the known smuggling sequences (`<LF>.<LF>`, `<CR>.<CR>`,
//! `<LF>.<CRLF>`, `<CRLF>.<LF>`, …) ends the transaction. Bare CR/LF are counted and handled
//! by [`BareLineEndings`].

use crate::limits::BareLineEndings;

/// Defects found while receiving a body; any of them fails the transaction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ContentDefects {
    /// The body grew past the message size limit (the rest was discarded).
    pub too_big: bool,
    /// A line was longer than the body line limit.
    pub line_too_long: bool,
    /// A bare CR or LF was seen under the `Reject` policy.
    pub bare_line_ending: bool,
}

impl ContentDefects {
    /// True if no defect was found.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

/// Checks content octets (from DATA after unstuffing, or from BDAT chunks) and appends them to
/// the body, enforcing size, line length and the bare line-ending policy.
#[derive(Debug)]
pub struct ContentSink {
    body: Vec<u8>,
    max_size: usize,
    max_line: usize,
    policy: BareLineEndings,
    line_len: usize,
    cr_pending: bool,
    /// Defects found so far.
    pub defects: ContentDefects,
}

impl ContentSink {
    /// A sink with the given limits; `prefix_capacity` pre-sizes the buffer.
    pub fn new(max_size: usize, max_line: usize, policy: BareLineEndings, hint: usize) -> Self {
        Self {
            body: Vec::with_capacity(hint.min(max_size).min(1 << 20)),
            max_size,
            max_line,
            policy,
            line_len: 0,
            cr_pending: false,
            defects: ContentDefects::default(),
        }
    }

    /// Octets accepted so far.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// True if nothing was accepted yet.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    fn emit(&mut self, bytes: &[u8]) {
        if self.defects.too_big {
            return;
        }
        if self.body.len() + bytes.len() > self.max_size {
            self.defects.too_big = true;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(bytes);
    }

    fn bare(&mut self, what: u8) {
        match self.policy {
            BareLineEndings::Reject => {
                self.defects.bare_line_ending = true;
                self.emit(&[what]);
            }
            BareLineEndings::Normalize => self.emit(b"\r\n"),
        }
        self.line_len = 0;
    }

    /// Pushes content octets. CRLF pairs may be split across calls.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.cr_pending {
                self.cr_pending = false;
                if bytes[0] == b'\n' {
                    self.emit(b"\r\n");
                    self.line_len = 0;
                    bytes = &bytes[1..];
                    continue;
                }
                self.bare(b'\r');
            }
            // Copy the run of ordinary octets at once.
            let run = bytes
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(bytes.len());
            if run > 0 {
                self.line_len += run;
                if self.line_len > self.max_line {
                    self.defects.line_too_long = true;
                }
                self.emit(&bytes[..run]);
                bytes = &bytes[run..];
                continue;
            }
            match bytes[0] {
                b'\r' => self.cr_pending = true,
                _ => self.bare(b'\n'),
            }
            bytes = &bytes[1..];
        }
    }

    /// Ends the content: a trailing lone CR is a bare CR. Returns the body and its defects.
    pub fn finish(mut self) -> (Vec<u8>, ContentDefects) {
        if self.cr_pending {
            self.cr_pending = false;
            self.bare(b'\r');
        }
        (self.body, self.defects)
    }
}

/// Where the DATA receiver stands within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// At the start of a line (after CRLF, or at the very start of DATA).
    Start,
    /// A leading dot was seen and removed; nothing else yet on this line.
    Dot,
    /// A leading dot, then CR.
    DotCr,
    /// Inside a line.
    Middle,
    /// Inside a line, after a CR.
    MiddleCr,
}

/// Receives a DATA body: dot-unstuffs and finds the terminating `<CRLF>.<CRLF>`.
#[derive(Debug)]
pub struct DataReceiver {
    state: LineState,
    /// The CR of a `.<CR>` line was the last octet of the previous input and is held back
    /// until we know whether an LF (the terminator) follows.
    held_cr: bool,
    sink: ContentSink,
}

impl DataReceiver {
    /// A receiver whose content goes to `sink`.
    pub fn new(sink: ContentSink) -> Self {
        Self {
            state: LineState::Start,
            held_cr: false,
            sink,
        }
    }

    /// Consumes octets from `input`; returns how many were consumed and whether the end of
    /// data was reached (the octets after the terminator are left unconsumed).
    pub fn ingest(&mut self, input: &[u8]) -> (usize, bool) {
        if input.is_empty() {
            return (0, false);
        }
        if self.held_cr {
            self.held_cr = false;
            if input[0] == b'\n' {
                return (1, true);
            }
            self.sink.push(b"\r");
        }
        let mut i = 0;
        let mut run_start = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                LineState::Middle => {
                    // Fast path: skip to the next CR (LF is checked by the sink).
                    match input[i..].iter().position(|&c| c == b'\r') {
                        Some(p) => {
                            i += p + 1;
                            self.state = LineState::MiddleCr;
                        }
                        None => i = input.len(),
                    }
                    continue;
                }
                LineState::MiddleCr => {
                    self.state = match b {
                        b'\n' => LineState::Start,
                        b'\r' => LineState::MiddleCr,
                        _ => LineState::Middle,
                    };
                }
                LineState::Start => {
                    if b == b'.' {
                        // Flush what came before the dot; the dot itself is dropped.
                        self.sink.push(&input[run_start..i]);
                        run_start = i + 1;
                        self.state = LineState::Dot;
                    } else if b == b'\r' {
                        self.state = LineState::MiddleCr;
                    } else {
                        self.state = LineState::Middle;
                    }
                }
                LineState::Dot => {
                    self.state = match b {
                        b'\r' => LineState::DotCr,
                        _ => LineState::Middle,
                    };
                }
                LineState::DotCr => {
                    if b == b'\n' {
                        // "<CRLF>.<CRLF>": the CR after the dot is not content.
                        self.sink.push(&input[run_start..i - 1]);
                        return (i + 1, true);
                    }
                    self.state = if b == b'\r' {
                        LineState::MiddleCr
                    } else {
                        LineState::Middle
                    };
                }
            }
            i += 1;
        }
        // A CR right after a removed dot may be the terminator's: hold it back.
        if self.state == LineState::DotCr {
            self.sink.push(&input[run_start..input.len() - 1]);
            self.held_cr = true;
            return (input.len(), false);
        }
        self.sink.push(&input[run_start..]);
        (input.len(), false)
    }

    /// The collected body and its defects.
    pub fn finish(self) -> (Vec<u8>, ContentDefects) {
        self.sink.finish()
    }
}
