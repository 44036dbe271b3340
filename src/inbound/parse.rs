//! Reading one RFC 5322 message with `mailparse`: who sent it, to whom, what it answers,
//! its text (any charset and transfer encoding; `text/plain` preferred, HTML converted
//! when it is the only body), its attachments, and whether it is automatic mail that
//! must not become a ticket.

use mailparse::{DispositionType, MailHeaderMap, ParsedMail};
use sha2::{Digest, Sha256};

use super::text::{html_to_text, tidy};

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the message is not valid MIME: {0}")]
    Malformed(String),
    #[error("the message has no sender address (From)")]
    NoSender,
}

/// One attachment of a message, decoded.
#[derive(Debug, Clone)]
pub struct MailAttachment {
    pub filename: String,
    pub content_type: String,
    pub content: Vec<u8>,
}

/// What ingestion needs of a message.
#[derive(Debug, Clone)]
pub struct InboundMail {
    /// The Message-ID without angle brackets; for a message without one, a digest of its
    /// bytes, so that a replayed copy is still recognised.
    pub message_id: String,
    /// `In-Reply-To` then `References` (newest first), without angle brackets.
    pub answers: Vec<String>,
    pub sender: String,
    pub sender_name: String,
    /// `To`, `Cc`, `Delivered-To` and `X-Original-To` addresses, lower-cased.
    pub recipients: Vec<String>,
    pub subject: String,
    pub body: String,
    pub attachments: Vec<MailAttachment>,
    /// Set when the message is automatic (auto-reply, bounce, list mail, our own).
    pub automatic: Option<&'static str>,
}

/// Reads `raw`; `own_address` is the address our notifications come from (`X-Loop` and
/// mail from it are ours).
pub fn parse(raw: &[u8], own_address: &str) -> Result<InboundMail, ParseError> {
    let mail =
        mailparse::parse_mail(raw).map_err(|error| ParseError::Malformed(error.to_string()))?;
    let headers = mail.get_headers();
    let (sender, sender_name) = headers
        .get_first_header("From")
        .and_then(|h| mailparse::addrparse_header(h).ok())
        .and_then(|list| list.extract_single_info())
        .map(|info| {
            let name = info.display_name.unwrap_or_default();
            let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
            (info.addr.trim().to_owned(), name)
        })
        .filter(|(addr, _)| valid_address(addr))
        .ok_or(ParseError::NoSender)?;
    let message_id = headers
        .get_first_value("Message-ID")
        .and_then(|v| mailparse::msgidparse(&v).ok())
        .and_then(|ids| ids.first().cloned())
        .map(|id| id.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|id| !id.trim().is_empty())
        .unwrap_or_else(|| {
            let digest: String = Sha256::digest(raw)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("sha256-{digest}@arctyk.invalid")
        });
    let mut answers = Vec::new();
    for name in ["In-Reply-To", "References"] {
        if let Some(ids) = headers
            .get_first_value(name)
            .and_then(|v| mailparse::msgidparse(&v).ok())
        {
            // The newest reference is the last one.
            answers.extend(ids.iter().rev().filter(|id| !id.contains('\0')).cloned());
        }
    }
    let mut recipients = Vec::new();
    for name in ["To", "Cc", "Delivered-To", "X-Original-To"] {
        for header in headers.get_all_headers(name) {
            if let Ok(list) = mailparse::addrparse_header(header) {
                for addr in list.iter() {
                    match addr {
                        mailparse::MailAddr::Single(info) => {
                            recipients.push(info.addr.to_ascii_lowercase())
                        }
                        mailparse::MailAddr::Group(group) => recipients
                            .extend(group.addrs.iter().map(|i| i.addr.to_ascii_lowercase())),
                    }
                }
            }
        }
    }
    let subject = headers
        .get_first_value("Subject")
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let automatic = automatic(&mail, &sender, own_address);
    let mut plain = None;
    let mut html = None;
    let mut attachments = Vec::new();
    for part in mail.parts() {
        let mime = part.ctype.mimetype.to_ascii_lowercase();
        let mime = if !mime.is_empty() && mime.chars().all(|c| c.is_ascii_graphic()) {
            mime
        } else {
            "application/octet-stream".to_owned()
        };
        if mime.starts_with("multipart/") {
            continue;
        }
        let disposition = part.get_content_disposition();
        let filename = disposition
            .params
            .get("filename")
            .or_else(|| part.ctype.params.get("name"))
            .cloned();
        let is_attachment =
            disposition.disposition == DispositionType::Attachment || filename.is_some();
        if !is_attachment && mime == "text/plain" && plain.is_none() {
            plain = part.get_body().ok();
        } else if !is_attachment && mime == "text/html" && html.is_none() {
            html = part.get_body().ok();
        } else if is_attachment || !mime.starts_with("text/") {
            let content = part
                .get_body_raw()
                .map_err(|error| ParseError::Malformed(error.to_string()))?;
            attachments.push(MailAttachment {
                filename: safe_filename(filename.as_deref().unwrap_or("attachment")),
                content_type: mime,
                content,
            });
        }
    }
    let body = match (plain, html) {
        (Some(text), _) => tidy(&text),
        (None, Some(html)) => html_to_text(&html),
        (None, None) => String::new(),
    };
    Ok(InboundMail {
        message_id,
        answers,
        sender,
        sender_name,
        recipients,
        subject: subject.replace('\0', ""),
        body: body.replace('\0', ""),
        attachments,
        automatic,
    })
}

fn valid_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && addr.len() <= 254
        && !addr.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The reason a message is automatic and must not be answered or ticketed, if it is.
fn automatic(mail: &ParsedMail, sender: &str, own_address: &str) -> Option<&'static str> {
    let headers = mail.get_headers();
    let value = |name: &str| {
        headers
            .get_first_value(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if value("Auto-Submitted").is_some_and(|v| !v.is_empty() && v != "no") {
        return Some("auto_submitted");
    }
    if let Some(precedence) = value("Precedence") {
        match precedence.as_str() {
            "bulk" => return Some("precedence_bulk"),
            "junk" => return Some("precedence_junk"),
            "list" => return Some("precedence_list"),
            _ => {}
        }
    }
    let own = own_address.to_ascii_lowercase();
    if headers
        .get_all_values("X-Loop")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains(&own))
    {
        return Some("x_loop");
    }
    if headers.get_first_header("List-Id").is_some() {
        return Some("mailing_list");
    }
    if let Some(path) = value("Return-Path") {
        let path = path.trim_matches(|c: char| c == '<' || c == '>' || c.is_whitespace());
        if path.is_empty() {
            return Some("empty_return_path");
        }
    }
    if mail.ctype.mimetype.eq_ignore_ascii_case("multipart/report") {
        return Some("delivery_report");
    }
    if headers.get_first_header("X-Autoreply").is_some()
        || headers.get_first_header("X-Autorespond").is_some()
    {
        return Some("auto_reply");
    }
    let sender = sender.to_ascii_lowercase();
    if sender == own {
        return Some("own_address");
    }
    let local = sender.split('@').next().unwrap_or_default();
    if local == "mailer-daemon" || local == "postmaster" {
        return Some("bounce");
    }
    None
}

/// A file name without directories or control characters, at most 200 characters.
fn safe_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "attachment".to_owned()
    } else {
        cleaned.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_replies_are_recognised() {
        let raw = b"From: a@x.test\r\nAuto-Submitted: auto-replied\r\nSubject: Out\r\n\r\nAway";
        assert_eq!(
            parse(raw, "desk@d.test").unwrap().automatic,
            Some("auto_submitted")
        );
        let raw = b"From: a@x.test\r\nAuto-Submitted: no\r\nSubject: Hi\r\n\r\nHello";
        assert_eq!(parse(raw, "desk@d.test").unwrap().automatic, None);
    }

    #[test]
    fn messages_without_a_sender_are_refused() {
        assert!(matches!(
            parse(b"Subject: hi\r\n\r\nbody", "desk@d.test"),
            Err(ParseError::NoSender)
        ));
        assert!(parse(&[0xff, 0x00, 0x13, 0x80, 0x0a], "desk@d.test").is_err());
    }

    #[test]
    fn file_names_cannot_climb_directories() {
        assert_eq!(safe_filename("../../etc/passwd"), "passwd");
        assert_eq!(safe_filename(".."), "attachment");
    }
}
