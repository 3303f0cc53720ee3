//! QR codes for authenticator enrolment, drawn as SVG on the server (no script, no image
//! fetched, nothing marked raw: the modules are one escaped `path` attribute).

use maud::{Markup, html};
use qrcode::{Color, EcLevel, QrCode};

/// Modules of light border around the code (the quiet zone the standard asks for).
const QUIET: usize = 4;

/// The path of the dark modules of `code`, one unit square each, offset by the quiet zone.
fn dark_path(code: &QrCode) -> (String, usize) {
    let width = code.width();
    let mut d = String::new();
    let mut dark = 0;
    for (i, c) in code.to_colors().into_iter().enumerate() {
        if c == Color::Dark {
            let (x, y) = (i % width + QUIET, i / width + QUIET);
            d.push_str(&format!("M{x} {y}h1v1h-1z"));
            dark += 1;
        }
    }
    (d, dark)
}

/// `text` (an `otpauth://` URI) as an SVG QR code titled `label`, or nothing if it is too long
/// for a QR code.
pub fn svg(text: &str, label: &str) -> Markup {
    let Ok(code) = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M) else {
        return html! {};
    };
    let size = code.width() + 2 * QUIET;
    let (d, _) = dark_path(&code);
    html! {
        svg.qr xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (size) " " (size)} width="220" height="220"
            role="img" aria-label=(label) shape-rendering="crispEdges" {
            title { (label) }
            rect width=(size) height=(size) fill="#fff" {}
            path d=(d) fill="#000" {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dark_module_is_drawn_inside_the_quiet_zone() {
        let uri = "otpauth://totp/Sekisho:bob%40acme.test?secret=JBSWY3DPEHPK3PXP&issuer=Sekisho&digits=6&period=30";
        let code = QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M).unwrap();
        let (d, dark) = dark_path(&code);
        let colors = code.to_colors();
        assert_eq!(dark, colors.iter().filter(|c| **c == Color::Dark).count());
        assert_eq!(d.matches('M').count(), dark);
        // The finder pattern's corner modules are dark, offset by the quiet zone.
        assert!(d.starts_with(&format!("M{QUIET} {QUIET}h1v1h-1z")));
        let w = code.width();
        assert_eq!(colors[w - 1], Color::Dark, "top-right finder");
        assert_eq!(colors[(w - 1) * w], Color::Dark, "bottom-left finder");
        let html = svg(uri, "QR code").into_string();
        assert!(
            html.starts_with("<svg class=\"qr\"")
                && html.contains(&format!("viewBox=\"0 0 {} {}\"", w + 8, w + 8))
        );
        assert!(!html.contains("style") && !html.contains("script"));
        assert_eq!(svg(&"x".repeat(5000), "too long").into_string(), "");
    }
}
