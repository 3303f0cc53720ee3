//! The configuration: arbitrary text parsed and resolved as `serve` and `check-config` do.
//! It is refused with a message or accepted, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho::config::{Overrides, RawConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(raw) = RawConfig::parse(text) {
        let overrides = Overrides {
            data_dir: Some("/nonexistent/sekisho-fuzz".into()),
            ..Default::default()
        };
        let _ = raw.resolve(&overrides);
    }
});
