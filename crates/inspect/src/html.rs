//! The text a reader of an HTML body sees: markup removed, `<head>`, `<style>` and `<script>`
//! content dropped, character references decoded. A small scanner, not a browser: it is for
//! classifier features and content rules, and it never fails on malformed markup.

/// Elements whose content is not shown.
const HIDDEN: [&str; 4] = ["style", "script", "head", "title"];

/// The visible text of `html`. Tags become a space (a block boundary separates words);
/// unknown character references are kept as written.
pub fn visible_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut hidden: Option<&str> = None;
    // As a browser: a `<head>` after the body has started is ignored, and `<body>` ends a
    // head left open (else one stray `<head>` in a newsletter hides all that follows it).
    let mut in_body = false;
    while let Some(lt) = rest.find('<') {
        if hidden.is_none() {
            decode_into(&rest[..lt], &mut out);
        }
        rest = &rest[lt + 1..];
        let gt = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..gt];
        rest = rest.get(gt + 1..).unwrap_or("");
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .take(10)
            .collect::<String>()
            .to_ascii_lowercase();
        let body = !closing && name == "body";
        in_body |= body;
        match (hidden, closing) {
            (None, false) => {
                hidden = HIDDEN
                    .iter()
                    .copied()
                    .find(|h| *h == name && !tag.ends_with('/'))
                    .filter(|h| !(in_body && *h == "head"));
            }
            (Some(h), true) if h == name => hidden = None,
            (Some("head"), false) if body => hidden = None,
            _ => {}
        }
        out.push(' ');
    }
    if hidden.is_none() {
        decode_into(rest, &mut out);
    }
    out
}

/// Appends `text` with character references (`&amp;`, `&#160;`, `&#xA0;`, …) decoded.
fn decode_into(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..].find(';').map(|i| i + 1).filter(|&i| i <= 10);
        match end.and_then(|i| reference(&rest[1..i]).map(|c| (i, c))) {
            Some((i, c)) => {
                out.push(c);
                rest = &rest[i + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
}

/// The character of a reference's name (between `&` and `;`).
fn reference(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code).filter(|c| !c.is_control() || c.is_whitespace());
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        "rsquo" | "lsquo" => '\'',
        "rdquo" | "ldquo" => '"',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::visible_text;

    fn squeeze(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn markup_and_hidden_content_go_references_are_decoded() {
        let html = "<html><head><title>T</title><style>p{color:red}</style></head>\
                    <body><p>Fish&nbsp;&amp;&#32;chips &#x263A; <b>now</b></p>\
                    <script>var x = '<p>no</p>';</script>after</body></html>";
        assert_eq!(squeeze(&visible_text(html)), "Fish & chips ☺ now after");
    }

    #[test]
    fn a_head_after_the_body_started_or_left_open_hides_nothing_of_the_body() {
        let stray = "<body><HEAD><TITLE>Tech Update</TITLE><p>Copyright 2002 CNET</p></body>";
        assert_eq!(squeeze(&visible_text(stray)), "Copyright 2002 CNET");
        let open = "<html><head><title>t</title><body><p>Hello</p>";
        assert_eq!(squeeze(&visible_text(open)), "Hello");
        let normal = "<html><head><title>t</title><style>p{}</style></head><body>Hi</body>";
        assert_eq!(squeeze(&visible_text(normal)), "Hi");
    }

    #[test]
    fn malformed_markup_and_unknown_references_are_kept_or_dropped_safely() {
        assert_eq!(
            squeeze(&visible_text("a &bogus; b &#xZZ; c &")),
            "a &bogus; b &#xZZ; c &"
        );
        assert_eq!(squeeze(&visible_text("text <b unclosed")), "text");
        assert_eq!(squeeze(&visible_text("<style>never closed")), "");
        assert_eq!(squeeze(&visible_text("x<br/>y<style/>z")), "x y z");
        assert_eq!(visible_text("&#0;&#1114112;"), "&#0;&#1114112;");
    }
}
