//! Email → envelope: MIME parsing (mail-parser), HTML sanitizing (ammonia), attachments and the raw
//! message as blobs, quote folding for display. Pure: no I/O, so it can be fuzzed and benchmarked.

use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};
use inbox_core::envelope::{
    AttachmentRef, Automated, BlobRef, Body, ChannelKind, InboundMessage, Party, ThreadHints,
};
use inbox_core::file_name::clean_file_name;
use inbox_core::identity::EmailAddress;
use inbox_core::ids::{ChannelId, MessageId};
use mail_parser::{HeaderValue, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

/// Why a message could not become an envelope (it is dead-lettered with this error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a MIME message")]
    NotAMessage,
    #[error("From: no usable sender address")]
    NoSender,
    /// The MIME parser or the HTML sanitizer panicked on this input.
    #[error("the message broke the parser: {0}")]
    Panicked(String),
}

/// What kind of mail this is, for the threading rules: automated mail never opens a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailKind {
    Regular,
    /// `Auto-Submitted` other than `no`, or a vacation-style `X-Autoreply`/`Precedence`.
    AutoReply,
    /// A delivery status notification: the Message-ID of the bounced mail and what the
    /// receiving server said, when they can be found.
    Bounce {
        original: Option<String>,
        reason: Option<String>,
    },
}

/// A parsed email: the envelope to publish and the blobs to store first.
#[derive(Debug, Clone)]
pub struct ParsedEmail {
    pub message: InboundMessage,
    pub kind: EmailKind,
    /// The raw message and every attachment, keyed by the references in `message`.
    pub blobs: Vec<(BlobRef, Vec<u8>)>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `<id@host>` → `id@host`.
fn bare_id(id: &str) -> String {
    without_nul(
        id.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned(),
    )
}

/// `s` without NUL characters: RFC 5322 forbids them, PostgreSQL cannot store them in text, and
/// a message that cannot be stored would stop its partition.
fn without_nul(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s
    }
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![bare_id(t)],
        HeaderValue::TextList(list) => list.iter().map(|t| bare_id(t)).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|id| !id.is_empty())
    .collect()
}

/// Parses raw RFC 5322 bytes into an envelope for `channel_id`.
pub fn parse_email(
    raw: &[u8],
    channel_id: ChannelId,
    received_at: DateTime<Utc>,
) -> Result<ParsedEmail, ParseError> {
    // mail-parser and ammonia run on hostile input. A panic in them (mail-parser 0.11.9 has a
    // reachable `debug_assert!`, found by fuzzing) must become this message's error: unwinding
    // through the source would make it fetch the same message again, forever.
    std::panic::catch_unwind(|| normalize(raw, channel_id, received_at)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(ParseError::Panicked(what))
    })
}

fn normalize(
    raw: &[u8],
    channel_id: ChannelId,
    received_at: DateTime<Utc>,
) -> Result<ParsedEmail, ParseError> {
    let parsed = MessageParser::default()
        .parse(raw)
        .ok_or(ParseError::NotAMessage)?;
    if parsed.headers().is_empty() {
        return Err(ParseError::NotAMessage);
    }
    let raw_hash = sha256_hex(raw);
    let sender = parsed
        .from()
        .and_then(|a| a.first())
        .and_then(|addr| {
            let email = EmailAddress::parse(addr.address()?).ok()?;
            Some((email, addr.name().map(|n| without_nul(n.to_owned()))))
        })
        .ok_or(ParseError::NoSender)?;

    // A stable id when Message-ID is missing: the same bytes fetched twice give the same id.
    let external_id = parsed
        .message_id()
        .map(bare_id)
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| format!("sha256:{raw_hash}"));
    let in_reply_to = ids(parsed.in_reply_to()).into_iter().next();
    let references = ids(parsed.references());
    // An impossible date (month 13, year 99999) is no date: the core then uses the arrival time.
    let sent_at = parsed
        .date()
        .filter(|d| d.is_valid())
        .and_then(|d| Utc.timestamp_opt(d.to_timestamp(), 0).single());
    let to: Vec<Party> = parsed
        .to()
        .into_iter()
        .chain(parsed.header("Cc").and_then(HeaderValue::as_address))
        .chain(
            parsed
                .header("Delivered-To")
                .and_then(HeaderValue::as_address),
        )
        .flat_map(|a| a.iter())
        .filter_map(|addr| {
            Some(Party {
                handle: EmailAddress::parse(addr.address()?).ok()?.to_string(),
                name: addr.name().map(|n| without_nul(n.to_owned())),
                email: None,
                phone: None,
            })
        })
        .collect();

    let html = parsed.body_html(0).map(|h| without_nul(sanitize_html(&h)));
    let text = without_nul(match parsed.body_text(0) {
        Some(text) => text.into_owned(),
        None => html.as_deref().map(html_to_text).unwrap_or_default(),
    });

    let mut blobs = Vec::new();
    let raw_ref = BlobRef(format!("raw/{raw_hash}.eml"));
    blobs.push((raw_ref.clone(), raw.to_vec()));
    let mut attachments = Vec::new();
    let mut seen = HashSet::new();
    for part in parsed.attachments() {
        let contents = part.contents();
        let hash = sha256_hex(contents);
        let name = part
            .attachment_name()
            .and_then(clean_file_name)
            .unwrap_or_else(|| "attachment".to_owned());
        let content_type = part.content_type().map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        });
        let blob = BlobRef(format!("attachments/{hash}/{}", blob_file_name(&name)));
        if seen.insert(blob.0.clone()) {
            blobs.push((blob.clone(), contents.to_vec()));
        }
        attachments.push(AttachmentRef {
            name,
            content_type,
            size: Some(contents.len() as u64),
            blob,
        });
    }

    let kind = classify(&parsed);
    Ok(ParsedEmail {
        message: InboundMessage {
            id: MessageId::new(),
            channel_id,
            channel_kind: ChannelKind::EMAIL,
            external_id,
            thread: ThreadHints {
                in_reply_to,
                references,
                subject: parsed.subject().map(|s| without_nul(s.to_owned())),
                chat_id: None,
            },
            from: Party {
                handle: sender.0.to_string(),
                name: sender.1,
                email: None,
                phone: None,
            },
            to,
            sent_at,
            received_at,
            body: Body { text, html },
            attachments,
            raw: Some(raw_ref),
            automated: match &kind {
                EmailKind::Regular => None,
                EmailKind::AutoReply => Some(Automated::AutoReply),
                EmailKind::Bounce { original, reason } => Some(Automated::Bounce {
                    original: original.clone(),
                    reason: reason.clone(),
                }),
            },
            edited_at: None,
            author: None,
            part_of: None,
        },
        kind,
        blobs,
    })
}

fn classify(parsed: &mail_parser::Message<'_>) -> EmailKind {
    let header = |name: &str| {
        parsed
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let is_report = parsed.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    if is_report {
        // The bounced message's headers are in a message/rfc822 or text/rfc822-headers part.
        let original = parsed.parts.iter().find_map(|part| {
            let id = match part.message() {
                Some(message) => message.message_id().map(bare_id),
                None if is_type(part, "text", "rfc822-headers") => MessageParser::default()
                    .parse_headers(part.contents())?
                    .message_id()
                    .map(bare_id),
                None => None,
            };
            id.filter(|id| !id.is_empty())
        });
        // What the server said is in the machine-readable part: Diagnostic-Code, else Status.
        let reason = parsed
            .parts
            .iter()
            .find(|part| is_type(part, "message", "delivery-status"))
            .and_then(|part| delivery_status_reason(&String::from_utf8_lossy(part.contents())));
        return EmailKind::Bounce { original, reason };
    }
    let auto_submitted = header("Auto-Submitted").is_some_and(|v| v != "no");
    let precedence =
        header("Precedence").is_some_and(|v| matches!(v.as_str(), "auto_reply" | "bulk" | "junk"));
    if auto_submitted
        || precedence
        || header("X-Autoreply").is_some()
        || header("X-Autorespond").is_some()
    {
        return EmailKind::AutoReply;
    }
    EmailKind::Regular
}

/// `Diagnostic-Code: smtp; 550 5.1.1 …` → `550 5.1.1 …`; else the `Status:` code.
fn delivery_status_reason(text: &str) -> Option<String> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    field("Diagnostic-Code")
        .map(|code| match code.split_once(';') {
            Some((_, said)) => said.trim().to_owned(),
            None => code,
        })
        .or_else(|| field("Status").map(|status| format!("status {status}")))
        .filter(|reason| !reason.is_empty())
}

fn is_type(part: &mail_parser::MessagePart<'_>, ctype: &str, subtype: &str) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
    })
}

/// Longest blob file name once the blob store has percent-encoded it. Local file systems allow
/// 255 bytes per name and object_store's local store appends `#<n>` while writing; a blob that
/// cannot be written would stop the mailbox (the source retries the same message).
const MAX_BLOB_NAME: usize = 200;

/// `name` shortened (extension kept) to fit [`MAX_BLOB_NAME`] when encoded: object_store
/// percent-encodes non-ASCII bytes and most punctuation, three bytes each. The attachment
/// reference keeps the full name.
fn blob_file_name(name: &str) -> String {
    let cost = |c: char| {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            1
        } else {
            3 * c.len_utf8()
        }
    };
    let encoded = |s: &str| s.chars().map(cost).sum::<usize>();
    if encoded(name) <= MAX_BLOB_NAME {
        return name.to_owned();
    }
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && encoded(ext) < 40 => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    let mut budget = MAX_BLOB_NAME - encoded(&extension);
    let mut out: String = stem
        .chars()
        .take_while(|&c| {
            let fits = cost(c) <= budget;
            budget = budget.saturating_sub(cost(c));
            fits
        })
        .collect();
    out.push_str(&extension);
    out
}

/// Email HTML made safe to show: no scripts, event handlers, forms, styles that run code, or
/// `javascript:` URLs; links open in a new tab without referrer; remote images are not loaded
/// (their URL is kept in `data-remote-src` so the UI can offer to load them).
///
/// HTML nested deeper than [`MAX_HTML_DEPTH`] comes back as its escaped text instead.
pub fn sanitize_html(html: &str) -> String {
    if nesting_depth(html) > MAX_HTML_DEPTH {
        return format!("<p>{}</p>", crate::html::escape_text(&html_to_text(html)));
    }
    ammonia::Builder::default()
        .add_tags(["font", "center"])
        .add_generic_attributes(["align", "dir"])
        .add_tag_attributes("img", ["data-remote-src"])
        .url_schemes(HashSet::from(["http", "https", "mailto", "cid", "data"]))
        .attribute_filter(|element, attribute, value| {
            // Browsers ignore whitespace and control characters in a URL's scheme. ammonia checks
            // the schemes of the URL attributes it knows, not of `cite`.
            let lower: String = value
                .chars()
                .filter(|c| !c.is_whitespace() && !c.is_control())
                .collect::<String>()
                .to_ascii_lowercase();
            if ["javascript:", "vbscript:", "livescript:"]
                .iter()
                .any(|scheme| lower.starts_with(scheme))
            {
                return None;
            }
            if element == "img" && attribute == "src" {
                // Inline images only; SVG can carry script.
                if lower.starts_with("cid:")
                    || (lower.starts_with("data:image/") && !lower.starts_with("data:image/svg"))
                {
                    return Some(value.into());
                }
                return None;
            }
            // data: URLs only as images: a link to data:text/html is a page of the sender's.
            if lower.starts_with("data:") && matches!(attribute, "href" | "src" | "cite") {
                return None;
            }
            Some(value.into())
        })
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(html)
        .to_string()
}

/// Deeper HTML is shown as text. html5ever checks the stack of open elements for most start tags,
/// so parsing takes depth × tags: 20,000 nested `<div>`s (220 KB) take seconds, a few MB of them
/// hours, and the mailbox waits for each message. Browsers stop nesting at 512 levels too.
const MAX_HTML_DEPTH: usize = 512;

/// An upper estimate of how deep `html` nests: start tags of elements that need an end tag, less
/// the end tags that match one of them.
fn nesting_depth(html: &str) -> usize {
    // Elements without content or whose end tag the parser implies: they do not nest.
    const FLAT: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr", "keygen", "p", "li", "dt", "dd", "option", "optgroup", "tr",
        "td", "th", "thead", "tbody", "tfoot", "colgroup", "caption", "rb", "rt", "rtc", "rp",
    ];
    let bytes = html.as_bytes();
    // Open elements by name (lowercased, first 16 bytes).
    let mut open: std::collections::HashMap<[u8; 16], usize> = std::collections::HashMap::new();
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        let end_tag = bytes.get(i + 1) == Some(&b'/');
        let start = i + 1 + usize::from(end_tag);
        let mut end = start;
        while end < bytes.len() && bytes[end].is_ascii_alphanumeric() {
            end += 1;
        }
        i = end.max(i + 1);
        if end == start || !bytes[start].is_ascii_alphabetic() {
            continue;
        }
        let name = &bytes[start..end];
        if FLAT
            .iter()
            .any(|flat| flat.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        let mut key = [0u8; 16];
        for (k, b) in key.iter_mut().zip(name) {
            *k = b.to_ascii_lowercase();
        }
        let count = open.entry(key).or_default();
        if end_tag {
            if *count > 0 {
                *count -= 1;
                depth -= 1;
            }
        } else {
            *count += 1;
            depth += 1;
            deepest = deepest.max(depth);
        }
    }
    deepest
}

/// Plain text of sanitized HTML, for mail without a text part.
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A message's text split for display: what the customer wrote, and the quoted history and
/// signature below it (kept, folded away by the UI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedText {
    pub visible: String,
    pub folded: String,
}

/// Folds `>`-quoted blocks, "On … wrote:" / Outlook "-----Original Message-----" / "From: …"
/// headers of forwarded history, and a `-- ` signature.
pub fn fold_quotes(text: &str) -> FoldedText {
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines.iter().position(|line| {
        let t = line.trim();
        t == "--"
            || line.trim_end() == "-- "
            || t.starts_with('>')
            || t.starts_with("-----Original Message-----")
            || (t.starts_with("On ") && t.ends_with("wrote:"))
            || (t.starts_with("Am ") && t.ends_with("schrieb:"))
            || (t.starts_with("Le ") && t.ends_with("a écrit :"))
            || t.starts_with("________________________________")
    });
    match cut {
        Some(i) if i > 0 => FoldedText {
            visible: lines[..i].join("\n").trim_end().to_owned(),
            folded: lines[i..].join("\n"),
        },
        _ => FoldedText {
            visible: text.trim_end().to_owned(),
            folded: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> ParsedEmail {
        parse_email(raw.as_bytes(), ChannelId::new(), Utc::now()).unwrap()
    }

    #[test]
    fn a_plain_reply_keeps_its_thread_headers() {
        let p = parse(
            "From: Ada Lovelace <Ada@Example.com>\r\nTo: support+t0k3n@shop.test\r\n\
             Subject: Re: Order 42\r\nMessage-ID: <m2@example.com>\r\nIn-Reply-To: <m1@shop.test>\r\n\
             References: <m0@example.com> <m1@shop.test>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\n\r\n\
             Thanks!\r\n\r\nOn Mon, Ada wrote:\r\n> old\r\n",
        );
        let m = &p.message;
        assert_eq!(m.external_id, "m2@example.com");
        assert_eq!(m.from.handle, "ada@example.com");
        assert_eq!(m.from.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(m.thread.in_reply_to.as_deref(), Some("m1@shop.test"));
        assert_eq!(m.thread.references, vec!["m0@example.com", "m1@shop.test"]);
        assert_eq!(m.thread.subject.as_deref(), Some("Re: Order 42"));
        assert_eq!(m.to[0].handle, "support+t0k3n@shop.test");
        assert_eq!(m.sent_at.unwrap().to_rfc3339(), "2026-11-24T09:00:00+00:00");
        assert_eq!(p.kind, EmailKind::Regular);
        assert_eq!(fold_quotes(&m.body.text).visible, "Thanks!");
        assert!(p.blobs[0].0.0.starts_with("raw/"));
    }

    #[test]
    fn a_missing_message_id_gets_a_stable_hash() {
        let raw = "From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";
        let a = parse(raw);
        let b = parse(raw);
        assert!(a.message.external_id.starts_with("sha256:"));
        assert_eq!(a.message.external_id, b.message.external_id);
        assert_eq!(a.message.sent_at, None);
    }

    #[test]
    fn html_is_sanitized_and_remote_images_blocked() {
        let html = r#"<p onclick="x()">Hi<script>alert(1)</script></p><a href="javascript:alert(1)">x</a><img src="https://track.example/p.gif"><img src="cid:logo"><svg onload="alert(1)"></svg><style>body{background:url(javascript:alert(1))}</style>"#;
        let clean = sanitize_html(html);
        for bad in [
            "script",
            "onclick",
            "javascript:",
            "track.example",
            "onload",
            "<style",
        ] {
            assert!(!clean.contains(bad), "{bad} survived: {clean}");
        }
        assert!(clean.contains("cid:logo"));
    }

    #[test]
    fn automated_mail_is_recognised() {
        let auto = parse(
            "From: a@example.com\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\naway\r\n",
        );
        assert_eq!(auto.kind, EmailKind::AutoReply);
        let bounce = parse(
            "From: MAILER-DAEMON@shop.test\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n\
             --b\r\nContent-Type: message/delivery-status\r\n\r\nStatus: 5.1.1\r\n\
             --b\r\nContent-Type: message/rfc822\r\n\r\nFrom: support@shop.test\r\nMessage-ID: <ours@shop.test>\r\n\r\nhello\r\n--b--\r\n",
        );
        assert_eq!(
            bounce.kind,
            EmailKind::Bounce {
                original: Some("ours@shop.test".into()),
                reason: Some("status 5.1.1".into()),
            }
        );
    }

    #[test]
    fn attachments_become_blobs_with_safe_names() {
        let p = parse(
            "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n\
             --x\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
             --x\r\nContent-Type: application/pdf; name=\"../../etc/passwd.pdf\"\r\nContent-Disposition: attachment; filename=\"../../etc/passwd.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--x--\r\n",
        );
        let a = &p.message.attachments[0];
        assert!(!a.name.contains('/'), "{}", a.name);
        assert_eq!(a.content_type.as_deref(), Some("application/pdf"));
        assert_eq!(a.size, Some(5));
        assert!(
            p.blobs
                .iter()
                .any(|(r, bytes)| r == &a.blob && bytes == b"%PDF-")
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_email(b"", ChannelId::new(), Utc::now()).is_err());
        assert_eq!(
            parse_email(b"Subject: no sender\r\n\r\nx", ChannelId::new(), Utc::now()).unwrap_err(),
            ParseError::NoSender
        );
    }

    #[test]
    fn quotes_and_signatures_fold() {
        let f = fold_quotes("Hello\n\nBest,\nAda\n-- \nAda Lovelace, Analyst\n");
        assert_eq!(f.visible, "Hello\n\nBest,\nAda");
        assert!(f.folded.contains("Analyst"));
        let outlook = fold_quotes("Yes.\n\n-----Original Message-----\nFrom: x\n");
        assert_eq!(outlook.visible, "Yes.");
    }
}
