//! The malformed-mail corpus (`tests/fixtures/mail/corpus/*.eml`) through the email normalizer:
//! every message becomes an envelope or a clear [`ParseError`], never a panic; no HTML that
//! survives sanitizing can run script; every blob reference can be written by the local blob
//! store; and a 10 MB attachment (built in memory) travels as a blob, not in the envelope.
//!
//! `cargo test -p inbox-connectors --test corpus -- --nocapture` prints what became of each file;
//! with `INBOX_CORPUS_DUMP=<dir>` the envelope of each (`<file>.json`) is written there too.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use chrono::Utc;
use inbox_connectors::email::parse::{EmailKind, ParseError, ParsedEmail, parse_email};
use inbox_connectors::email::sample::{corpus_dir, mail_with_attachment, noise, read_corpus};
use inbox_core::envelope::InboundEvent;
use inbox_core::ids::ChannelId;

/// Every `.eml` of the corpus, by file name.
fn corpus() -> BTreeMap<String, Vec<u8>> {
    let files =
        read_corpus(&corpus_dir()).unwrap_or_else(|e| panic!("{}: {e}", corpus_dir().display()));
    assert!(
        files.len() >= 30,
        "the corpus has {} messages, expected at least 30",
        files.len()
    );
    files
}

/// Parses with a panic turned into an `Err` naming the file.
fn parse_guarded(name: &str, raw: &[u8]) -> Result<Result<ParsedEmail, ParseError>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        parse_email(raw, ChannelId::new(), Utc::now())
    }))
    .map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        format!("{name}: parse_email panicked: {message}")
    })
}

// ---------------------------------------------------------------------------------------------
// Checking sanitized HTML

/// One start tag of serialized HTML: lowercased name and attributes (values entity-decoded).
#[derive(Debug)]
struct Tag {
    name: String,
    attributes: Vec<(String, String)>,
}

/// The start tags of `html`. Comments, end tags and text are skipped; quoted attribute values
/// may contain `>`.
fn start_tags(html: &str) -> Vec<Tag> {
    let chars: Vec<char> = html.chars().collect();
    let mut tags = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '<' {
            i += 1;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 4)].iter().collect();
        if rest.starts_with("<!--") {
            let text: String = chars[i..].iter().collect();
            i += text.find("-->").map_or(chars.len(), |end| end + 3);
            continue;
        }
        if !chars.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic()) {
            i += 1;
            continue;
        }
        i += 1;
        let mut name = String::new();
        while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '/' | '>') {
            name.push(chars[i].to_ascii_lowercase());
            i += 1;
        }
        let mut attributes = Vec::new();
        loop {
            while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
                i += 1;
            }
            if i >= chars.len() || chars[i] == '>' {
                i += 1;
                break;
            }
            let mut attribute = String::new();
            while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '=' | '>') {
                attribute.push(chars[i].to_ascii_lowercase());
                i += 1;
            }
            let mut value = String::new();
            if chars.get(i) == Some(&'=') {
                i += 1;
                match chars.get(i) {
                    Some(&quote) if quote == '"' || quote == '\'' => {
                        i += 1;
                        while i < chars.len() && chars[i] != quote {
                            value.push(chars[i]);
                            i += 1;
                        }
                        i += 1;
                    }
                    _ => {
                        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '>' {
                            value.push(chars[i]);
                            i += 1;
                        }
                    }
                }
            }
            attributes.push((attribute, decode_entities(&value)));
        }
        tags.push(Tag { name, attributes });
    }
    tags
}

/// Decodes numeric character references and the named ones that matter for URLs.
fn decode_entities(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest.find(';').filter(|&end| end <= 12);
        let decoded = end.and_then(|end| {
            let entity = &rest[1..end];
            let c = if let Some(hex) = entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
            {
                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
            } else if let Some(dec) = entity.strip_prefix('#') {
                dec.parse().ok().and_then(char::from_u32)
            } else {
                match entity.to_ascii_lowercase().as_str() {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "colon" => Some(':'),
                    "tab" => Some('\t'),
                    "newline" => Some('\n'),
                    "nbsp" => Some('\u{a0}'),
                    _ => None,
                }
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Elements that must never come out of the sanitizer.
const FORBIDDEN_ELEMENTS: &[&str] = &[
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "meta", "base",
    "link", "form", "svg", "math", "portal", "template", "noscript",
];

/// What in sanitized HTML could still run script, parsed case-insensitively; empty when safe.
fn html_problems(html: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let lower = html.to_lowercase();
    if lower.contains("<script") {
        problems.push("`<script` survived".to_owned());
    }
    for tag in start_tags(html) {
        if FORBIDDEN_ELEMENTS.contains(&tag.name.as_str()) {
            problems.push(format!("<{}> element survived", tag.name));
        }
        for (name, value) in &tag.attributes {
            if name.starts_with("on") {
                problems.push(format!("event handler {name}= on <{}>", tag.name));
            }
            // Browsers ignore ASCII whitespace and controls inside a URL scheme.
            let squeezed: String = value
                .chars()
                .filter(|c| !c.is_whitespace() && !c.is_control())
                .collect::<String>()
                .to_lowercase();
            for scheme in ["javascript:", "vbscript:", "livescript:"] {
                if squeezed.starts_with(scheme) || squeezed.contains(&format!("url({scheme}")) {
                    problems.push(format!("{scheme} URL in {name}= of <{}>", tag.name));
                }
            }
            if squeezed.contains("expression(") {
                problems.push(format!("expression( in {name}= of <{}>", tag.name));
            }
            if name == "src" || name == "href" {
                if squeezed.starts_with("data:") && !squeezed.starts_with("data:image/") {
                    problems.push(format!("non-image data: URL in {name}= of <{}>", tag.name));
                }
                if squeezed.starts_with("data:image/svg") {
                    problems.push(format!("SVG data: URL in {name}= of <{}>", tag.name));
                }
            }
        }
    }
    problems
}

#[test]
fn the_html_checker_finds_what_it_looks_for() {
    for (bad, why) in [
        ("<p>x</p><SCRIPT>alert(1)</SCRIPT>", "script"),
        ("<img src=\"x\" OnError=\"alert(1)\">", "handler"),
        (
            "<a href=\"java&#x09;script&colon;alert(1)\">x</a>",
            "entity URL",
        ),
        ("<a href='VBScript:x'>x</a>", "vbscript"),
        (
            "<div title=\"a\" style=\"width:expression(alert(1))\">",
            "expression",
        ),
        ("<iframe src=\"https://x\"></iframe>", "iframe"),
        ("<a href=\"data:text/html,x\">x</a>", "data URL"),
    ] {
        assert!(!html_problems(bad).is_empty(), "{why}: {bad}");
    }
    assert!(
        html_problems(
            "<p title=\"a > b\">onion=1 javascript: in text is fine</p><img src=\"cid:x\">\
             <a href=\"https://x.example/?u=javascript:1\">a query is not a scheme</a>"
        )
        .is_empty()
    );
}

#[test]
fn hostile_html_snippets_are_defused() {
    use inbox_connectors::email::parse::sanitize_html;
    for html in [
        r#"<a href="data:text/html,<script>alert(1)</script>">x</a>"#,
        r#"<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>"#,
        r#"<img src="data:image/svg+xml,<svg onload=alert(1)>">"#,
        r#"<blockquote cite="javascript:alert(1)">q</blockquote>"#,
        r#"<a href=" &#14;javascript:alert(1)">x</a>"#,
        r#"<p style="width:expression(alert(1))" onclick="x()">p</p>"#,
    ] {
        let clean = sanitize_html(html);
        assert!(html_problems(&clean).is_empty(), "{html} → {clean}");
    }
    let png = "data:image/png;base64,iVBORw0KGgo=";
    assert!(sanitize_html(&format!(r#"<img src="{png}">"#)).contains(png));

    // Deeply nested HTML is shown as text: parsing it would take depth × tags.
    let deep = format!(
        "{}<script>alert(1)</script><b>bold</b>{}",
        "<div>".repeat(100_000),
        "</div>".repeat(100_000)
    );
    let clean = sanitize_html(&deep);
    assert!(html_problems(&clean).is_empty(), "{clean}");
    assert_eq!(start_tags(&clean).len(), 1, "{clean}");
    assert!(clean.contains("bold"), "{clean}");
    // Ordinary depth stays HTML.
    let nested = format!("{}<b>bold</b>{}", "<div>".repeat(300), "</div>".repeat(300));
    assert!(sanitize_html(&nested).contains("<b>bold</b>"));
}

// ---------------------------------------------------------------------------------------------
// The corpus

/// Text fields of an envelope, for field-level checks.
fn text_fields(p: &ParsedEmail) -> Vec<(&'static str, String)> {
    let m = &p.message;
    let mut fields = vec![
        ("external_id", m.external_id.clone()),
        ("from.handle", m.from.handle.clone()),
        ("from.name", m.from.name.clone().unwrap_or_default()),
        ("subject", m.thread.subject.clone().unwrap_or_default()),
        ("text", m.body.text.clone()),
        ("html", m.body.html.clone().unwrap_or_default()),
    ];
    for a in &m.attachments {
        fields.push(("attachment name", a.name.clone()));
    }
    fields
}

#[test]
fn every_corpus_message_is_an_envelope_or_a_clear_error() {
    let corpus = corpus();
    let mut panics = Vec::new();
    let mut unsafe_html = Vec::new();
    let mut broken = Vec::new();
    let (mut parsed, mut rejected) = (0, 0);
    for (name, raw) in &corpus {
        let started = std::time::Instant::now();
        let outcome = parse_guarded(name, raw);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => {
                panics.push(panic);
                continue;
            }
        };
        match outcome {
            Ok(p) => {
                parsed += 1;
                let m = &p.message;
                println!(
                    "  ok        {name:<45} {ms:>7.1} ms  {:<26} from={:<28} attachments={:<3} html={:<5} sent_at={}",
                    format!("{:?}", p.kind),
                    m.from.handle,
                    m.attachments.len(),
                    m.body.html.is_some(),
                    m.sent_at.map_or("-".into(), |t| t.to_rfc3339()),
                );
                if let Some(dir) = std::env::var_os("INBOX_CORPUS_DUMP") {
                    let json = serde_json::to_vec_pretty(m).unwrap();
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(Path::new(&dir).join(format!("{name}.json")), json).unwrap();
                }
                if let Some(html) = &m.body.html {
                    for problem in html_problems(html) {
                        unsafe_html.push(format!("{name}: {problem}"));
                    }
                }
                if m.external_id.trim().is_empty() {
                    broken.push(format!("{name}: empty external_id"));
                }
                for (field, value) in text_fields(&p) {
                    if value.contains('\0') {
                        broken.push(format!("{name}: NUL in {field}"));
                    }
                }
                assert_eq!(
                    p.blobs[0].1, *raw,
                    "{name}: the raw message is the first blob"
                );
                for a in &m.attachments {
                    let blob = p.blobs.iter().find(|(r, _)| *r == a.blob);
                    match blob {
                        Some((_, bytes)) => assert_eq!(Some(bytes.len() as u64), a.size, "{name}"),
                        None => broken.push(format!("{name}: attachment {} has no blob", a.name)),
                    }
                }
            }
            Err(error) => {
                rejected += 1;
                let message = error.to_string();
                println!("  rejected  {name:<45} {ms:>7.1} ms  {message}");
                assert!(!message.is_empty(), "{name}: an error says what is wrong");
            }
        }
    }
    println!(
        "corpus: {} messages, {parsed} parsed, {rejected} rejected, {} panicked",
        corpus.len(),
        panics.len()
    );
    assert!(panics.is_empty(), "panics:\n{}", panics.join("\n"));
    assert!(
        unsafe_html.is_empty(),
        "script survived sanitizing:\n{}",
        unsafe_html.join("\n")
    );
    assert!(broken.is_empty(), "wrong fields:\n{}", broken.join("\n"));
}

fn parse_file(name: &str) -> Result<ParsedEmail, ParseError> {
    let raw = corpus()
        .remove(name)
        .unwrap_or_else(|| panic!("{name} is not in the corpus"));
    parse_guarded(name, &raw).unwrap_or_else(|panic| panic!("{panic}"))
}

fn ok(name: &str) -> ParsedEmail {
    parse_file(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn headers_are_read_as_well_as_they_can_be() {
    // No Message-ID: a stable id from the bytes. No or unusable Date: no sent_at (the core uses
    // the arrival time), never a made-up one.
    assert!(
        ok("missing-message-id.eml")
            .message
            .external_id
            .starts_with("sha256:")
    );
    for name in [
        "missing-date.eml",
        "garbage-date.eml",
        "date-out-of-range.eml",
    ] {
        assert_eq!(ok(name).message.sent_at, None, "{name}");
    }
    assert_eq!(
        ok("date-far-future.eml")
            .message
            .sent_at
            .unwrap()
            .to_rfc3339(),
        "2099-01-01T00:00:00+00:00"
    );
    for name in [
        "no-from.eml",
        "from-display-name-only.eml",
        "from-invalid-address.eml",
        "from-group-syntax.eml",
    ] {
        assert_eq!(
            parse_file(name).unwrap_err(),
            ParseError::NoSender,
            "{name}"
        );
    }
    for name in ["not-an-email-binary.eml", "not-an-email-text.eml"] {
        assert!(parse_file(name).is_err(), "{name}");
    }

    let jp = ok("charset-iso-2022-jp.eml").message;
    assert_eq!(jp.thread.subject.as_deref(), Some("注文について"));
    assert_eq!(jp.from.name.as_deref(), Some("山田太郎"));
    assert!(jp.body.text.contains("注文番号"), "{}", jp.body.text);
    let cp1252 = ok("charset-windows-1252.eml").message;
    assert!(
        cp1252.body.text.contains("“It doesn’t work”"),
        "{}",
        cp1252.body.text
    );
    assert_eq!(
        cp1252.thread.subject.as_deref(),
        Some("“Smart quotes” and €")
    );
    let folded = ok("long-header-folded.eml").message;
    assert_eq!(folded.thread.references.len(), 400);
    assert!(folded.thread.in_reply_to.is_some());
    let raw8 = ok("headers-raw-8bit.eml").message;
    assert_eq!(raw8.from.handle, "juergen@example.test");
    assert_eq!(raw8.from.name.as_deref(), Some("Jürgen Müller"));
}

#[test]
fn automated_mail_is_classified() {
    assert_eq!(ok("auto-reply-vacation.eml").kind, EmailKind::AutoReply);
    // Postfix returns only the headers of the bounced mail (text/rfc822-headers).
    match ok("dsn-bounce.eml").kind {
        EmailKind::Bounce { original, .. } => {
            assert_eq!(original.as_deref(), Some("0190aaaa.cdeadbeef@example.test"));
        }
        other => panic!("dsn-bounce.eml is a bounce, not {other:?}"),
    }
    assert_eq!(ok("calendar-invite.eml").kind, EmailKind::Regular);
}

#[test]
fn attachments_and_inline_images_become_blobs() {
    let cid = ok("inline-cid-images.eml");
    let html = cid.message.body.html.as_deref().unwrap();
    assert!(html.contains("cid:logo@corpus"), "{html}");
    assert!(
        cid.message.attachments.iter().any(|a| a.name == "logo.png"),
        "{:?}",
        cid.message.attachments
    );
    let tnef = ok("tnef-winmail-dat.eml");
    let winmail = tnef
        .message
        .attachments
        .iter()
        .find(|a| a.name == "winmail.dat")
        .expect("winmail.dat is kept as an attachment");
    assert_eq!(winmail.content_type.as_deref(), Some("application/ms-tnef"));
    let calendar = ok("calendar-invite.eml");
    assert!(
        calendar
            .message
            .attachments
            .iter()
            .any(|a| a.name == "invite.ics")
    );
    let many = ok("multipart-many-parts.eml");
    assert_eq!(many.message.attachments.len(), 300);
    let names = ok("attachment-hostile-names.eml");
    for a in &names.message.attachments {
        assert!(
            !a.name.contains('/') && !a.name.contains('\\') && a.name != "." && a.name != "..",
            "{:?}",
            a.name
        );
        assert!(
            !a.blob.0.contains("/../") && !a.blob.0.ends_with("/.."),
            "{}",
            a.blob.0
        );
    }
}

/// Every blob a parsed message asks to store can be written by the local blob store of `inbox
/// run` (file-name length and character limits included): a blob that cannot be written stops the
/// mailbox, since the source retries the same message.
#[tokio::test]
async fn every_blob_can_be_stored_on_the_local_file_system() {
    use object_store::ObjectStore;
    use object_store::local::LocalFileSystem;
    use object_store::path::Path as BlobPath;

    let dir = std::env::temp_dir().join(format!(
        "inbox-corpus-blobs-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let blobs = LocalFileSystem::new_with_prefix(&dir).unwrap();
    let mut failures = Vec::new();
    for (name, raw) in corpus() {
        let Ok(Ok(parsed)) = parse_guarded(&name, &raw) else {
            continue;
        };
        for (blob, bytes) in parsed.blobs {
            if let Err(e) = blobs
                .put(&BlobPath::from(blob.0.as_str()), bytes.into())
                .await
            {
                failures.push(format!("{name}: {}: {e}", blob.0));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// A 10 MB attachment, built in memory

const BIG: usize = 10 * 1024 * 1024;

#[test]
fn a_10_mb_attachment_is_a_blob_and_the_envelope_stays_small() {
    let attachment = noise(BIG);
    let raw = mail_with_attachment(&attachment);
    assert!(raw.len() > 13_000_000, "{}", raw.len());
    let parsed = parse_guarded("10 MB", &raw)
        .unwrap()
        .expect("the 10 MB mail parses");
    let m = &parsed.message;
    assert_eq!(m.attachments.len(), 1);
    let a = &m.attachments[0];
    assert_eq!(a.name, "dump.bin");
    assert_eq!(a.size, Some(BIG as u64));
    let (_, blob) = parsed
        .blobs
        .iter()
        .find(|(r, _)| *r == a.blob)
        .expect("the attachment's blob");
    assert_eq!(blob.len(), BIG);
    assert!(*blob == attachment, "the blob holds the decoded attachment");
    assert_eq!(m.body.text.trim(), "Here it is.");
    let envelope = InboundEvent::Message(m.clone()).to_json();
    assert!(
        envelope.len() < 4096,
        "the envelope references the attachment instead of carrying it: {} bytes",
        envelope.len()
    );
}
