//! criterion benches for the frontends' hot paths: the IMAP, SMTP and POP3 command parsers,
//! the IMAP framer over a pipelined buffer, and the MIME metadata parse (with its record
//! encode/decode). Each bench checks its own answer.
//!
//! Groups whose name ends in `_pipeline` or starts with `mime_` hold a `baseline_*` bench
//! over the same input, so the figures read as ratios (`benches/criterion_table.py`):
//! splitting the same pipelined bytes into lines with `memchr` (what any line protocol
//! must do at least), or `mail-parser` alone for the MIME metadata that is built on it.
//!
//! `cargo bench -p ringmail-benches --bench protocol [-- --quick]`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringmail::imap::{parse_command, Command as ImapCommand, Frame, Framer, Limits};
use ringmail::lines::{next_line, Input, Line};
use ringmail::mime::MessageMeta;
use ringmail::{pop3, smtp};
use ringmail_benches::mailgen::MailGen;

/// Splits `buf` into lines as the SMTP/POP3 servers do (memchr for LF, each line copied
/// out): the baseline of the pipeline groups. Returns the number of lines.
fn memchr_lines(buf: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = buf;
    while let Some(i) = memchr::memchr(b'\n', rest) {
        let line = rest[..i].strip_suffix(b"\r").unwrap_or(&rest[..i]).to_vec();
        black_box(line);
        rest = &rest[i + 1..];
        n += 1;
    }
    n
}

/// Thunderbird's header fetch when it opens a folder.
const IMAP_FETCH_HEADERS: &[u8] = b"a12 UID FETCH 1:500 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n";
const IMAP_SEARCH: &[u8] =
    b"a13 UID SEARCH UNSEEN SINCE 1-Nov-2026 OR FROM \"ann\" SUBJECT \"quarterly report\" NOT DELETED\r\n";
const IMAP_FETCH_FLAGS: &[u8] = b"a14 UID FETCH 4711 (FLAGS)\r\n";
const IMAP_FETCH_BODY: &[u8] = b"a15 UID FETCH 4711 (RFC822.SIZE BODY.PEEK[])\r\n";
const IMAP_STORE: &[u8] = b"a16 UID STORE 4711 +FLAGS.SILENT (\\Seen \\Flagged)\r\n";
const IMAP_NOOP: &[u8] = b"a17 NOOP\r\n";

/// An APPEND of a ~4 KiB message as a non-synchronizing literal (LITERAL+).
fn imap_append(msg: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "a18 APPEND INBOX (\\Seen) \"22-Nov-2026 10:00:00 +0000\" {{{}+}}\r\n",
        msg.len()
    )
    .into_bytes();
    v.extend_from_slice(msg);
    v.extend_from_slice(b"\r\n");
    v
}

/// A client's pipelined burst: the loadgen's command mix, ten rounds.
fn imap_pipelined() -> (Vec<u8>, usize) {
    let mut buf = Vec::new();
    let mut n = 0;
    for _ in 0..10 {
        for c in [
            IMAP_FETCH_FLAGS,
            IMAP_FETCH_BODY,
            IMAP_FETCH_FLAGS,
            IMAP_FETCH_BODY,
            IMAP_FETCH_HEADERS,
            IMAP_SEARCH,
            IMAP_STORE,
            IMAP_NOOP,
        ] {
            buf.extend_from_slice(c);
            n += 1;
        }
    }
    (buf, n)
}

fn imap(c: &mut Criterion) {
    let mut g = c.benchmark_group("imap_parse");
    let append = imap_append(&MailGen::new(3).message_of_size(4096));
    for (name, bytes) in [
        ("fetch_header_fields", IMAP_FETCH_HEADERS),
        ("search", IMAP_SEARCH),
        ("fetch_flags", IMAP_FETCH_FLAGS),
        ("fetch_body_peek", IMAP_FETCH_BODY),
        ("store", IMAP_STORE),
        ("noop", IMAP_NOOP),
        ("append_4k_literal", append.as_slice()),
    ] {
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter(|| {
                let (tag, cmd) = parse_command(black_box(bytes)).expect("parses");
                assert!(tag.starts_with('a'));
                assert!(!matches!(cmd, ImapCommand::Unsupported(_)));
                cmd
            })
        });
    }
    g.finish();

    let (buf, n) = imap_pipelined();
    let mut g = c.benchmark_group("imap_pipeline");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("baseline_memchr_lines", |b| {
        b.iter(|| assert_eq!(memchr_lines(black_box(&buf)), n))
    });
    g.bench_function("framer", |b| {
        b.iter(|| {
            let mut f = Framer::new(Limits::default());
            f.input(black_box(&buf));
            let mut k = 0;
            while let Some(fr) = f.next_frame() {
                assert!(matches!(fr, Frame::Command(_)));
                k += 1;
            }
            assert_eq!(k, n);
        })
    });
    g.bench_function("framer_and_parse", |b| {
        b.iter(|| {
            let mut f = Framer::new(Limits::default());
            f.input(black_box(&buf));
            let mut k = 0;
            while let Some(Frame::Command(bytes)) = f.next_frame() {
                black_box(parse_command(&bytes).expect("parses"));
                k += 1;
            }
            assert_eq!(k, n);
        })
    });
    g.finish();

    // The framer over a burst of APPENDs with ~4 KiB LITERAL+ messages: literal bytes are
    // copied, not scanned line by line.
    let mut appends = Vec::new();
    let mut gen = MailGen::new(5);
    for _ in 0..16 {
        appends.extend_from_slice(&imap_append(&gen.message_of_size(4096)));
    }
    let mut g = c.benchmark_group("imap_append_pipeline");
    g.throughput(Throughput::Bytes(appends.len() as u64));
    g.bench_function("baseline_memchr_lines", |b| {
        b.iter(|| assert!(memchr_lines(black_box(&appends)) > 16))
    });
    g.bench_function("framer", |b| {
        b.iter(|| {
            let mut f = Framer::new(Limits::default());
            f.input(black_box(&appends));
            let mut k = 0;
            while let Some(fr) = f.next_frame() {
                assert!(matches!(fr, Frame::Command(_)));
                k += 1;
            }
            assert_eq!(k, 16);
        })
    });
    g.finish();
}

const SMTP_TRANSACTION: &[&[u8]] = &[
    b"EHLO client.example.net",
    b"MAIL FROM:<sender.name@lists.example.org> SIZE=4096 BODY=8BITMIME SMTPUTF8",
    b"RCPT TO:<bench17@example.org> NOTIFY=FAILURE ORCPT=rfc822;bench17@example.org",
    b"RCPT TO:<bench18@example.org>",
    b"RCPT TO:<bench19@example.org>",
    b"DATA",
    b"RSET",
    b"NOOP",
    b"QUIT",
];

fn pipelined(lines: &[&[u8]], rounds: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    for _ in 0..rounds {
        for l in lines {
            buf.extend_from_slice(l);
            buf.extend_from_slice(b"\r\n");
        }
    }
    buf
}

/// `lines::next_line` (the servers' line splitter) over `buf`, each line given to `parse`.
fn split_and_parse<T, E: std::fmt::Debug>(
    buf: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, E>,
) -> usize {
    let mut input = Input::default();
    input.push(buf);
    let mut skip = false;
    let mut n = 0;
    while let Line::Line(l) = next_line(&mut input, &mut skip, 4096) {
        black_box(parse(&l).expect("parses"));
        n += 1;
    }
    n
}

/// A session's lines pipelined ten times over: split only (the baseline is a memchr
/// split), split with the shared line splitter, and split and parse.
fn pipeline_group<T, E: std::fmt::Debug>(
    c: &mut Criterion,
    name: &str,
    session: &[&[u8]],
    parse: impl Fn(&[u8]) -> Result<T, E>,
) {
    let buf = pipelined(session, 10);
    let n = session.len() * 10;
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("baseline_memchr_lines", |b| {
        b.iter(|| assert_eq!(memchr_lines(black_box(&buf)), n))
    });
    g.bench_function("next_line", |b| {
        b.iter(|| {
            assert_eq!(
                split_and_parse(black_box(&buf), |l| Ok::<_, ()>(l.len())),
                n
            )
        })
    });
    g.bench_function("next_line_and_parse", |b| {
        b.iter(|| assert_eq!(split_and_parse(black_box(&buf), &parse), n))
    });
    g.finish();
}

fn smtp_pop3(c: &mut Criterion) {
    let mut g = c.benchmark_group("smtp_parse");
    g.throughput(Throughput::Elements(1));
    for (name, line) in [
        ("ehlo", SMTP_TRANSACTION[0]),
        ("mail_from_params", SMTP_TRANSACTION[1]),
        ("rcpt_to", SMTP_TRANSACTION[3]),
        ("data", SMTP_TRANSACTION[5]),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| smtp::command::parse(black_box(line)).expect("parses"))
        });
    }
    g.finish();

    pipeline_group(c, "smtp_pipeline", SMTP_TRANSACTION, smtp::command::parse);

    const POP3_SESSION: &[&[u8]] = &[
        b"CAPA",
        b"USER bench17@example.org",
        b"PASS bench",
        b"STAT",
        b"UIDL",
        b"LIST 3",
        b"RETR 3",
        b"TOP 4 10",
        b"DELE 3",
        b"QUIT",
    ];
    let mut g = c.benchmark_group("pop3_parse");
    g.throughput(Throughput::Elements(1));
    for (name, line) in [("retr", POP3_SESSION[6]), ("user", POP3_SESSION[1])] {
        g.bench_function(name, |b| {
            b.iter(|| pop3::command::parse(black_box(line)).expect("parses"))
        });
    }
    g.finish();
    pipeline_group(c, "pop3_pipeline", POP3_SESSION, pop3::command::parse);
}

/// A multipart/mixed message as clients send it: a multipart/alternative text and HTML
/// body, a forwarded message/rfc822, and a base64 PDF attachment; encoded-word headers.
fn multipart_message() -> Vec<u8> {
    let mut gen = MailGen::new(11);
    let text = gen.message_of_size(3000);
    let text = &text[text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let fwd = gen.message_of_size(2500);
    let mut pdf = String::new();
    for i in 0..160 {
        // 76-column base64 lines (12 KiB of attachment).
        pdf.push_str(&format!(
            "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZUR{i:04}\r\n"
        ));
    }
    let mut m = Vec::new();
    m.extend_from_slice(
        b"Return-Path: <ann@example.org>\r\n\
Received: from mx1.example.org (mx1.example.org [192.0.2.1])\r\n\tby mail.example.net (ringmail) with ESMTPS id 0123456789abcdef\r\n\tfor <bob@example.net>; Mon, 23 Nov 2026 10:00:00 +0000\r\n\
From: =?UTF-8?Q?Ann_M=C3=BCller?= <ann@example.org>\r\n\
To: Bob <bob@example.net>, carol@example.net\r\n\
Cc: =?UTF-8?B?w4lsb2TDrWU=?= <elodie@example.com>\r\n\
Subject: =?UTF-8?Q?R=C3=A9sum=C3=A9_of_the_quarterly_report?=\r\n\
 and the forwarded thread\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <20261123100000.4711@example.org>\r\n\
In-Reply-To: <20261120.1@example.net>\r\n\
References: <20261119.1@example.net>\r\n\t<20261120.1@example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer-4711\"\r\n\r\n\
This is a multi-part message in MIME format.\r\n\
--outer-4711\r\n\
Content-Type: multipart/alternative; boundary=\"inner-4711\"\r\n\r\n\
--inner-4711\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
    );
    m.extend_from_slice(text);
    m.extend_from_slice(b"\r\n--inner-4711\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<html><body><p>");
    m.extend_from_slice(text);
    m.extend_from_slice(b"</p></body></html>\r\n--inner-4711--\r\n\r\n--outer-4711\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\n");
    m.extend_from_slice(&fwd);
    m.extend_from_slice(b"\r\n--outer-4711\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf\r\n\r\n");
    m.extend_from_slice(pdf.as_bytes());
    m.extend_from_slice(b"--outer-4711--\r\n");
    m
}

fn mime(c: &mut Criterion) {
    let msg = multipart_message();
    let meta = MessageMeta::parse(&msg);
    assert_eq!(meta.root.content_type, "multipart/mixed");
    assert_eq!(meta.root.children.len(), 3);
    let mut g = c.benchmark_group("mime_multipart");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function("baseline_mail_parser", |b| {
        b.iter(|| {
            let m = mail_parser::MessageParser::default()
                .parse(black_box(&msg))
                .expect("parses");
            assert!(m.parts.len() > 3);
        })
    });
    g.bench_function("message_meta_parse", |b| {
        b.iter(|| {
            let m = MessageMeta::parse(black_box(&msg));
            assert_eq!(m.root.children.len(), 3);
            m
        })
    });
    g.finish();

    // Realistic mail (half text/plain, half multipart/alternative), as delivered.
    let mut gen = MailGen::new(42);
    let msgs: Vec<Vec<u8>> = (0..64).map(|_| gen.message()).collect();
    let bytes: usize = msgs.iter().map(|m| m.len()).sum();
    let mut g = c.benchmark_group("mime_mailgen_64");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("baseline_mail_parser", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(
                    mail_parser::MessageParser::default()
                        .parse(m)
                        .expect("parses"),
                );
            }
        })
    });
    g.bench_function("message_meta_parse", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(MessageMeta::parse(m));
            }
        })
    });
    g.finish();

    // The metadata record stored with each message and read back (meta cache misses).
    let rec = meta.encode();
    assert_eq!(MessageMeta::decode(&rec).expect("decodes"), meta);
    let mut g = c.benchmark_group("mime_meta_record");
    g.throughput(Throughput::Bytes(rec.len() as u64));
    g.bench_function("encode_multipart", |b| {
        b.iter(|| assert_eq!(black_box(&meta).encode().len(), rec.len()))
    });
    g.bench_function("decode_multipart", |b| {
        b.iter(|| MessageMeta::decode(black_box(&rec)).expect("decodes"))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = imap, smtp_pop3, mime
}
criterion_main!(benches);
