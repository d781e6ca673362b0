//! A generator of realistic text mail, deterministic for a seed.
//!
//! Sizes follow a log-normal distribution with a median of 3.5 KiB and a long tail capped
//! at 300 KiB, as measured on provider mail stores. Messages have the header block of real
//! mail (Received chains, a DKIM signature, list headers), and either a text/plain body or a
//! multipart/alternative with a plain and an HTML version, in English-like text whose word
//! frequencies follow Zipf's law. About one in five has an RFC 2047 encoded-word Subject and
//! display name and 8-bit UTF-8 words in its text; about one in six (and most large ones)
//! is a multipart/mixed with a base64 attachment, which then takes most of the size.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "you",
    "that",
    "it",
    "he",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "I",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
    "my",
    "than",
    "first",
    "water",
    "been",
    "call",
    "who",
    "oil",
    "its",
    "now",
    "find",
    "long",
    "down",
    "day",
    "did",
    "get",
    "come",
    "made",
    "may",
    "part",
    "meeting",
    "project",
    "report",
    "please",
    "thanks",
    "attached",
    "review",
    "schedule",
    "budget",
    "customer",
    "order",
    "invoice",
    "shipping",
    "account",
    "update",
    "security",
    "password",
    "team",
    "quarter",
    "results",
    "deadline",
    "tomorrow",
    "friday",
    "monday",
    "office",
    "conference",
    "proposal",
    "contract",
    "draft",
    "version",
    "feedback",
    "question",
    "answer",
    "support",
    "ticket",
    "release",
    "server",
    "database",
    "network",
    "storage",
    "performance",
    "delivery",
    "newsletter",
    "subscription",
    "unsubscribe",
    "offer",
    "discount",
    "product",
    "service",
];

const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar", "peggy", "trent", "victor", "walter",
];
const DOMAINS: &[&str] = &[
    "example.org",
    "example.net",
    "mail.example.com",
    "corp.example",
    "lists.example.org",
];

pub struct MailGen {
    rng: SmallRng,
    seq: u64,
}

impl MailGen {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            seq: 0,
        }
    }

    /// A size drawn from the log-normal distribution (median 3.5 KiB, 300 KiB cap).
    pub fn size(&mut self) -> usize {
        // Box-Muller for a standard normal.
        let u1: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.gen();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let size = 3584.0 * (0.9 * z).exp();
        size.clamp(600.0, 300.0 * 1024.0) as usize
    }

    fn word(&mut self) -> &'static str {
        // Zipf-like: the index is the floor of an exponential over the list.
        let x: f64 = self.rng.gen();
        let i = ((WORDS.len() as f64).powf(x) - 1.0) as usize;
        WORDS[i.min(WORDS.len() - 1)]
    }

    fn address(&mut self) -> String {
        let n = NAMES[self.rng.gen_range(0..NAMES.len())];
        let d = DOMAINS[self.rng.gen_range(0..DOMAINS.len())];
        format!("{n}@{d}")
    }

    fn base64ish(&mut self, len: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..len)
            .map(|_| A[self.rng.gen_range(0..64)] as char)
            .collect()
    }

    fn text(&mut self, target: usize) -> String {
        let mut out = String::with_capacity(target + 100);
        let mut line = 0;
        while out.len() < target {
            let w = self.word();
            if line + w.len() > 72 {
                out.push_str("\r\n");
                line = 0;
            } else if line > 0 {
                out.push(' ');
                line += 1;
            }
            out.push_str(w);
            line += w.len();
            if self.rng.gen_ratio(1, 12) {
                out.push('.');
                if self.rng.gen_ratio(1, 6) {
                    out.push_str("\r\n\r\n");
                    line = 0;
                }
            }
        }
        out
    }

    /// The next message, about `size` bytes long.
    pub fn message_of_size(&mut self, size: usize) -> Vec<u8> {
        self.seq += 1;
        let from = self.address();
        let to = self.address();
        let subject: Vec<&str> = (0..self.rng.gen_range(3..9)).map(|_| self.word()).collect();
        let day = self.rng.gen_range(1..28);
        let hh = self.rng.gen_range(0..24);
        let mm = self.rng.gen_range(0..60);
        let id = self.rng.gen::<u64>();
        let sig = self.base64ish(344);
        let bh = self.base64ish(44);
        let mut h = String::new();
        h.push_str(&format!("Return-Path: <{from}>\r\n"));
        for hop in 0..self.rng.gen_range(2..5) {
            h.push_str(&format!(
                "Received: from mx{hop}.{} (mx{hop}.{} [192.0.2.{}])\r\n\tby mail.example.net (ringmail) with ESMTPS id {:016x}\r\n\tfor <{to}>; Mon, {day} Nov 2026 {hh:02}:{mm:02}:{:02} +0000\r\n",
                DOMAINS[hop % DOMAINS.len()], DOMAINS[hop % DOMAINS.len()], self.rng.gen_range(1..255), self.rng.gen::<u64>(), self.rng.gen_range(0..60)
            ));
        }
        h.push_str(&format!(
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s2026;\r\n\th=from:to:subject:date:message-id; bh={bh};\r\n\tb={}\r\n\t {}\r\n",
            &sig[..172], &sig[172..]
        ));
        let international = self.rng.gen_ratio(1, 5);
        if international {
            // Encoded words, as mail from outside the ASCII world carries them.
            let subject = format!("{} – Grüße aus Köln", subject.join(" "));
            h.push_str(&format!(
                "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <{from}>\r\nTo: {to}\r\nSubject: {}\r\n",
                encoded_word(&subject)
            ));
        } else {
            h.push_str(&format!(
                "From: {from}\r\nTo: {to}\r\nSubject: {}\r\n",
                subject.join(" ")
            ));
        }
        h.push_str(&format!("Date: Mon, {day} Nov 2026 {hh:02}:{mm:02}:00 +0000\r\nMessage-ID: <{id:016x}.{}@example.org>\r\nMIME-Version: 1.0\r\n", self.seq));
        if self.rng.gen_ratio(1, 3) {
            h.push_str(&format!(
                "List-Id: <news.{}>\r\nList-Unsubscribe: <https://lists.example.org/u/{id:x}>\r\n",
                DOMAINS[4]
            ));
        }
        let body_len = size.saturating_sub(h.len() + 150).max(40);
        let mut m = h;
        if size > 40_000 || self.rng.gen_ratio(1, 6) {
            // A short note and an attachment that takes the rest.
            let b = format!("m{id:x}");
            m.push_str(&format!("Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n--{b}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"));
            let note = self.text(body_len.min(600));
            m.push_str(&note);
            m.push_str(&format!("\r\n--{b}\r\nContent-Type: application/pdf; name=\"report-{}.pdf\"\r\nContent-Disposition: attachment; filename=\"report-{}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", self.seq, self.seq));
            while m.len() + 80 < size {
                let line = self.base64ish(76);
                m.push_str(&line);
                m.push_str("\r\n");
            }
            m.push_str(&format!("--{b}--\r\n"));
        } else if self.rng.gen_bool(0.5) {
            m.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            let mut t = self.text(body_len);
            if international {
                t.push_str("\r\nViele Grüße, café à bientôt\r\n");
            }
            m.push_str(&t);
        } else {
            let b = format!("b{id:x}");
            m.push_str(&format!("Content-Type: multipart/alternative; boundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"));
            let plain = self.text(body_len * 2 / 5);
            m.push_str(&plain);
            m.push_str(&format!("\r\n--{b}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><div style=\"font-family: Arial, sans-serif\">\r\n"));
            let html_len = body_len.saturating_sub(plain.len() + 200);
            while m.len() < size.saturating_sub(60) && html_len > 0 {
                let p = self.text(200);
                m.push_str(&format!("<p>{p}</p>\r\n"));
            }
            m.push_str(&format!("</div></body></html>\r\n--{b}--\r\n"));
        }
        m.push_str("\r\n");
        m.into_bytes()
    }

    pub fn message(&mut self) -> Vec<u8> {
        let s = self.size();
        self.message_of_size(s)
    }
}

/// `=?UTF-8?B?...?=`: one RFC 2047 encoded word (B encoding) of `s`.
fn encoded_word(s: &str) -> String {
    use base64::Engine;
    format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_have_the_documented_median_and_tail() {
        let mut g = MailGen::new(1);
        let mut sizes: Vec<usize> = (0..20_000).map(|_| g.message().len()).collect();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        assert!((3000..4200).contains(&median), "median {median}");
        assert!(*sizes.last().unwrap() > 50_000 && *sizes.last().unwrap() <= 310 * 1024);
    }

    #[test]
    fn has_attachments_encoded_words_and_8bit_text() {
        let mut g = MailGen::new(3);
        let msgs: Vec<Vec<u8>> = (0..600).map(|_| g.message()).collect();
        let has = |needle: &[u8]| {
            msgs.iter()
                .filter(|m| m.windows(needle.len()).any(|w| w == needle))
                .count()
        };
        let attachments = has(b"Content-Disposition: attachment");
        let encoded = has(b"Subject: =?UTF-8?B?");
        let eight_bit = has("Grüße".as_bytes());
        assert!((60..180).contains(&attachments), "{attachments}");
        assert!((70..200).contains(&encoded), "{encoded}");
        assert!(eight_bit > 20, "{eight_bit}");
    }

    #[test]
    fn deterministic_for_a_seed() {
        assert_eq!(MailGen::new(5).message(), MailGen::new(5).message());
    }
}
