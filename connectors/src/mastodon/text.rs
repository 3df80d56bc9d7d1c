//! Status HTML: made safe to show (ammonia: about the tags Mastodon itself allows, links without a
//! referrer), and read as plain text (paragraphs and line breaks kept).

use std::collections::HashSet;

/// A status's HTML as the inbox shows it: only what Mastodon itself allows in statuses.
pub fn sanitize(html: &str) -> String {
    ammonia::Builder::default()
        .tags(HashSet::from([
            "p",
            "br",
            "a",
            "span",
            "strong",
            "b",
            "em",
            "i",
            "del",
            "s",
            "u",
            "code",
            "pre",
            "blockquote",
            "ul",
            "ol",
            "li",
        ]))
        .url_schemes(HashSet::from(["http", "https"]))
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(html)
        .to_string()
}

/// The plain text of sanitized HTML: a paragraph ends with a blank line, `<br>` is a line break,
/// entities are decoded.
pub fn text_of(sanitized: &str) -> String {
    let mut out = String::with_capacity(sanitized.len());
    let mut rest = sanitized;
    while let Some(start) = rest.find('<') {
        out.push_str(&decode(&rest[..start]));
        let Some(end) = rest[start..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[start + 1..start + end].trim().to_ascii_lowercase();
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or_default();
        match (tag.starts_with('/'), name) {
            (_, "br") => out.push('\n'),
            (true, "p" | "blockquote" | "pre" | "ul" | "ol") => out.push_str("\n\n"),
            (true, "li") => out.push('\n'),
            _ => {}
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(&decode(rest));
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    let mut text = lines.join("\n");
    while text.contains("\n\n\n") {
        text = text.replace("\n\n\n", "\n\n");
    }
    text.trim().to_owned()
}

/// The entities ammonia writes (and numeric ones), back to characters.
fn decode(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let Some(semi) = after.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let entity = &after[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_text_with_their_paragraphs() {
        let html = r#"<p><span class="h-card" translate="no"><a href="https://m.example/@acme" class="u-url mention">@<span>acme</span></a></span> my order &amp; <b>you</b></p><p>line one<br>line two<br />&#x1F600; &#39;q&#39;</p>"#;
        let clean = sanitize(html);
        assert_eq!(
            text_of(&clean),
            "@acme my order & you\n\nline one\nline two\n😀 'q'"
        );
    }

    #[test]
    fn hostile_html_is_inert() {
        let clean = sanitize(
            r#"<p onclick="x()">hi<script>alert(1)</script><img src=x onerror=alert(1)><a href="javascript:alert(1)">l</a><iframe src="https://e.example"></iframe></p>"#,
        );
        assert!(!clean.contains("script"), "{clean}");
        assert!(
            !clean.contains("onerror") && !clean.contains("onclick"),
            "{clean}"
        );
        assert!(
            !clean.contains("javascript") && !clean.contains("iframe"),
            "{clean}"
        );
        assert!(!clean.contains("<img"), "{clean}");
        assert_eq!(text_of(&clean), "hil");
    }

    #[test]
    fn links_go_without_a_referrer() {
        let clean = sanitize(r#"<a href="https://shop.example/x">shop</a>"#);
        assert!(clean.contains("noreferrer"), "{clean}");
    }

    #[test]
    fn broken_entities_stay_as_written() {
        assert_eq!(decode("a & b &bogus; &#xZZ; &"), "a & b &bogus; &#xZZ; &");
    }
}
