//! Turning a message body into ticket text: HTML to plain text, and a reply cut down to
//! what its sender wrote (quoted text and signature trimmed).

/// Plain text from an HTML body: scripts and styles dropped, block elements as line
/// breaks, entities decoded, and quoted blocks (`<blockquote>`) prefixed with `> ` so
/// that [`trim_reply`] can recognise them.
pub fn html_to_text(html: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut quote_depth = 0usize;
    let mut rest = html;
    let flush = |line: &mut String, lines: &mut Vec<String>, depth: usize| {
        let text = collapse_spaces(&decode_entities(line));
        if text.is_empty() {
            lines.push(String::new());
        } else {
            lines.push(format!("{}{text}", "> ".repeat(depth)));
        }
        line.clear();
    };
    while let Some(start) = rest.find('<') {
        line.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(end) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = after[1..end].trim().to_ascii_lowercase();
        rest = &after[end + 1..];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let closing = tag.starts_with('/');
        if !closing && (name == "script" || name == "style" || name == "head") {
            let close = format!("</{name}");
            match rest.to_ascii_lowercase().find(&close) {
                Some(at) => {
                    rest = &rest[at..];
                    if let Some(gt) = rest.find('>') {
                        rest = &rest[gt + 1..];
                    }
                }
                None => rest = "",
            }
            continue;
        }
        match name.as_str() {
            "br" => flush(&mut line, &mut lines, quote_depth),
            "blockquote" => {
                if !line.trim().is_empty() {
                    flush(&mut line, &mut lines, quote_depth);
                }
                quote_depth = if closing {
                    quote_depth.saturating_sub(1)
                } else {
                    quote_depth + 1
                };
            }
            "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "ul" | "ol"
            | "table" | "hr" | "pre" => {
                if !line.trim().is_empty() {
                    flush(&mut line, &mut lines, quote_depth);
                }
                if name == "li" && !closing {
                    line.push_str("- ");
                }
            }
            _ => {}
        }
    }
    line.push_str(rest);
    flush(&mut line, &mut lines, quote_depth);
    tidy(&lines.join("\n"))
}

/// Whitespace runs as one space, as a browser renders them.
fn collapse_spaces(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find(';').filter(|end| *end <= 10);
        let decoded = end.and_then(|end| {
            let name = &after[..end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => {
                    let code = if let Some(hex) =
                        name.strip_prefix("#x").or_else(|| name.strip_prefix("#X"))
                    {
                        u32::from_str_radix(hex, 16).ok()
                    } else {
                        name.strip_prefix('#').and_then(|d| d.parse().ok())
                    };
                    code.and_then(char::from_u32)
                }
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Trailing spaces removed, CRLF as LF, at most one blank line in a row, no blank lines
/// at either end.
pub fn tidy(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() && out.last().is_none_or(|last| last.is_empty()) {
            continue;
        }
        out.push(line);
    }
    while out.last().is_some_and(|last| last.is_empty()) {
        out.pop();
    }
    out.join("\n")
}

/// What the sender of a reply wrote: the text up to the quoted message (Gmail's `On …
/// wrote:`, Outlook's `-----Original Message-----` or `From:`/`Sent:` header block, a
/// run of `>` lines to the end) or the signature (`-- `, `Sent from my …`). When nothing
/// is left, the whole text, so that no reply is lost.
pub fn trim_reply(text: &str) -> String {
    let text = tidy(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut cut = lines.len();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
        let lower = trimmed.to_ascii_lowercase();
        let gmail = (lower.starts_with("on ") && lower.ends_with("wrote:"))
            || (lower.starts_with("on ") && next.to_ascii_lowercase().ends_with("wrote:"))
            || (lower.starts_with("am ") && lower.ends_with("schrieb:"))
            || (lower.starts_with("le ") && lower.ends_with("a écrit :"));
        let outlook = lower.contains("-----original message-----")
            || (lower.starts_with("from:") && next.to_ascii_lowercase().starts_with("sent:"))
            || (trimmed.len() >= 20
                && trimmed.chars().all(|c| c == '_')
                && next.to_ascii_lowercase().starts_with("from:"));
        let signature = *line == "-- "
            || trimmed == "--"
            || lower.starts_with("sent from my ")
            || lower == "get outlook for ios"
            || lower == "get outlook for android";
        let quote_to_end = trimmed.starts_with('>')
            && lines[i..]
                .iter()
                .all(|l| l.trim().is_empty() || l.trim().starts_with('>'));
        if gmail || outlook || signature || quote_to_end {
            cut = i;
            break;
        }
    }
    let kept = tidy(&lines[..cut].join("\n"));
    if kept.is_empty() {
        text
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_readable_text() {
        let html = "<html><head><style>p{}</style></head><body><p>Hello&nbsp;team,</p>\
                    <p>The <b>VPN</b> is down &amp; so is mail.<br>Thanks</p>\
                    <script>alert(1)</script><ul><li>one</li><li>two</li></ul></body></html>";
        assert_eq!(
            html_to_text(html),
            "Hello team,\nThe VPN is down & so is mail.\nThanks\n- one\n- two"
        );
    }

    #[test]
    fn blockquotes_read_as_quoted_text() {
        let html = "<div>Fixed, thanks!</div><blockquote><div>Old text</div></blockquote>";
        assert_eq!(html_to_text(html), "Fixed, thanks!\n> Old text");
    }

    #[test]
    fn gmail_replies_lose_the_quote() {
        let text = "Works now.\n\nOn Fri, 27 Nov 2026 at 10:00, Desk <desk@x.test>\nwrote:\n> old";
        assert_eq!(trim_reply(text), "Works now.");
    }

    #[test]
    fn outlook_replies_lose_the_header_block_and_signatures_go() {
        let text = "Still broken.\r\n\r\nAlex\r\n-- \r\nAlex Example | IT\r\n";
        assert_eq!(trim_reply(text), "Still broken.\n\nAlex");
        let text = "Yes please.\n\nFrom: Desk <desk@x.test>\nSent: Friday\nSubject: [#4] VPN";
        assert_eq!(trim_reply(text), "Yes please.");
        let text = "Ok\n-----Original Message-----\nFrom: a";
        assert_eq!(trim_reply(text), "Ok");
    }

    #[test]
    fn a_reply_that_is_all_quote_is_kept_whole() {
        assert_eq!(trim_reply("> only a quote"), "> only a quote");
    }
}
