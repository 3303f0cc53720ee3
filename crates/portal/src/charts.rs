//! Charts as inline SVG, drawn on the server: real charts with no script and nothing fetched,
//! allowed by the CSP as they are (presentation attributes and classes, no inline styles).
//! Every bar carries a `<title>` with its exact figure (the tooltip and the accessible text).

use maud::{Markup, html};

/// Width of the drawing area (the SVG scales to its container).
const W: f64 = 720.0;

/// A vertical bar chart: one bar per value, `labels[i]` under bar `i` (empty labels are
/// skipped, so a long series can be labelled every few bars).
pub fn columns(caption: &str, labels: &[String], values: &[i64]) -> Markup {
    let (h, top, bottom, left) = (220.0, 12.0, 28.0, 44.0);
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let n = values.len().max(1) as f64;
    let step = (W - left - 8.0) / n;
    let bar = (step * 0.8).max(1.0);
    let scale = (h - top - bottom) / max as f64;
    let base = h - bottom;
    html! {
        svg.chart.columns xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (W) " " (h)} role="img" aria-label=(caption) {
            line.axis x1=(left) y1=(base) x2=(W - 4.0) y2=(base) {}
            text.tick x=(left - 6.0) y=(top + 4.0) text-anchor="end" { (max) }
            text.tick x=(left - 6.0) y=(base) text-anchor="end" { "0" }
            @for (i, v) in values.iter().enumerate() {
                @let x = left + i as f64 * step + (step - bar) / 2.0;
                @let bh = *v as f64 * scale;
                rect.bar x=(fmt(x)) y=(fmt(base - bh)) width=(fmt(bar)) height=(fmt(bh)) {
                    title { (labels.get(i).map(String::as_str).unwrap_or("")) ": " (v) }
                }
                @if let Some(l) = labels.get(i).filter(|l| !l.is_empty()) {
                    text.tick x=(fmt(x + bar / 2.0)) y=(h - 10.0) text-anchor="middle" { (l) }
                }
            }
        }
    }
}

/// A horizontal bar chart of named counts (longest first, as given).
pub fn bars(caption: &str, items: &[(String, i64)], class: &str) -> Markup {
    let (row, label_w) = (24.0, 260.0);
    let h = (items.len().max(1) as f64) * row + 8.0;
    let max = items.iter().map(|(_, c)| *c).max().unwrap_or(0).max(1);
    let scale = (W - label_w - 70.0) / max as f64;
    html! {
        svg.chart.bars xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (W) " " (fmt(h))} role="img" aria-label=(caption) {
            @if items.is_empty() {
                text.tick x="8" y="20" { "—" }
            }
            @for (i, (name, count)) in items.iter().enumerate() {
                @let y = 4.0 + i as f64 * row;
                text.label x=(label_w - 8.0) y=(fmt(y + 16.0)) text-anchor="end" {
                    title { (name) } (clip(name, 34)) }
                rect class={"bar " (class)} x=(label_w) y=(fmt(y + 3.0)) width=(fmt((*count as f64 * scale).max(1.0))) height=(fmt(row - 6.0)) {
                    title { (name) ": " (count) }
                }
                text.tick x=(fmt(label_w + *count as f64 * scale + 6.0)) y=(fmt(y + 16.0)) { (count) }
            }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// At most `n` characters, with an ellipsis when cut — in the middle, so that an address
/// keeps its domain (`newsletter-no-reply-…@mail.example.co.jp`); the full text is the
/// label's tooltip.
fn clip(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= n {
        return s.to_string();
    }
    // An address keeps its whole `@domain` when that leaves room for a few characters.
    let at = s.rfind('@').map(|i| s[i..].chars().count());
    let tail = match at {
        Some(d) if d + 4 <= n => d,
        _ => (n - 1) / 2,
    };
    let head = n - 1 - tail;
    let mut c: String = chars[..head].iter().collect();
    c.push('…');
    c.extend(&chars[chars.len() - tail..]);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_draw_one_scaled_bar_per_value() {
        let labels: Vec<String> = (0..4).map(|i| format!("{i:02}")).collect();
        let svg = columns("flow", &labels, &[0, 5, 10, 2]).into_string();
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 4);
        // The tallest bar spans the whole plot height (220 - 12 - 28 = 180).
        assert!(svg.contains("height=\"180.0\""), "{svg}");
        assert!(svg.contains("<title>02: 10</title>"), "{svg}");
        assert!(!svg.contains("style="), "inline styles would break the CSP");
    }

    #[test]
    fn bars_escape_names_and_clip_long_ones() {
        let items = vec![
            ("<script>x</script>@evil.test".to_string(), 3),
            ("a".repeat(80), 1),
        ];
        let svg = bars("senders", &items, "sender").into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains('…'));
        assert_eq!(svg.matches("class=\"bar sender\"").count(), 2);
        // A long address keeps its domain; the whole of it is the tooltip.
        let long = "newsletter-no-reply-marketing-team@mail.example.co.jp";
        let clipped = clip(long, 34);
        assert_eq!(clipped.chars().count(), 34);
        assert!(
            clipped.starts_with("newsletter") && clipped.ends_with("@mail.example.co.jp"),
            "{clipped}"
        );
        let svg = bars("senders", &[(long.to_string(), 1)], "sender").into_string();
        assert!(svg.contains(&format!("<title>{long}</title>")), "{svg}");
    }

    #[test]
    fn empty_series_draw_no_bars() {
        assert_eq!(
            bars("none", &[], "x")
                .into_string()
                .matches("<rect")
                .count(),
            0
        );
        assert_eq!(
            columns("none", &[], &[])
                .into_string()
                .matches("<rect")
                .count(),
            0
        );
    }
}
