//! URLAUTH (RFC 4467) and BURL (RFC 4468) on the real binary: a client stores a draft over
//! IMAP, has the server authorize a URL to it, and submits it by reference; the URL admits
//! only whom its access identifier names, only until it expires or its key is reset, and
//! only with its own token.

mod common;

use common::*;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

#[test]
fn a_draft_is_submitted_by_reference_and_only_as_authorized() {
    let srv = imap_server(&[ALICE, BOB], "", "");
    let out = srv.python(
        r#"
import imaplib, os, re, smtplib, ssl
P = lambda k: int(os.environ[k])
# imaplib does not know the URLAUTH commands.
for c in ("GENURLAUTH", "URLFETCH", "RESETKEY"):
    imaplib.Commands[c] = ("AUTH", "SELECTED")
draft = b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: by reference\r\n\r\nthe draft's text\r\n"
a = imaplib.IMAP4("127.0.0.1", P("IMAP"))
a.login("alice@example.org", "secret")
typ, caps = a.capability()
assert b" URLAUTH" in caps[0], caps
a.create("Drafts2")
typ, data = a.append("Drafts2", None, None, draft)
assert typ == "OK", data
uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
base = "imap://alice%%40example.org@localhost/Drafts2/;uid=%d" % uid

def gen(rump):
    typ, data = a._simple_command("GENURLAUTH", '"%s"' % rump, "INTERNAL")
    assert typ == "OK", (typ, data, rump)
    typ, data = a._untagged_response(typ, data, "GENURLAUTH")
    return data[-1].decode().strip().strip('"')

def fetch(conn, url):
    typ, data = conn._simple_command("URLFETCH", '"%s"' % url)
    assert typ == "OK", (typ, data)
    typ, data = conn._untagged_response(typ, data, "URLFETCH")
    flat = b"".join(d if isinstance(d, bytes) else b"".join(d) for d in data)
    return flat

submit = gen(base + ";urlauth=submit+alice%40example.org")
assert submit.startswith(base + ";urlauth=submit+alice%40example.org:internal:"), submit
mine = gen(base + "/;section=TEXT;urlauth=user+alice%40example.org")
anyone = gen(base + ";urlauth=authuser")
expired = gen(base + ";expire=2020-01-01T00:00:00Z;urlauth=authuser")

# RFC 4467 section 7: a rump without access identifier or owner, or of another server, is BAD.
for bad in [base, "imap://localhost/Drafts2/;uid=1;urlauth=authuser",
            base + ";urlauth=app+x", base.replace("localhost", "elsewhere.example") + ";urlauth=authuser",
            base.replace(";uid=%d" % uid, ";uid=999") + ";urlauth=authuser"]:
    try:
        a._simple_command("GENURLAUTH", '"%s"' % bad, "INTERNAL")
        print("accepted", bad)
    except a.error:
        print("genurlauth-bad")

b = imaplib.IMAP4("127.0.0.1", P("IMAP"))
b.login("bob@example.org", "secret")
print("mine-by-alice", b"the draft's text" in fetch(a, mine))
print("mine-by-bob", b"the draft's text" in fetch(b, mine))
print("anyone-by-bob", b"Subject: by reference" in fetch(b, anyone))
print("submit-by-imap", b"draft" in fetch(a, submit))
print("expired", b"draft" in fetch(b, expired))
forged = anyone[:-4] + ("0000" if not anyone.endswith("0000") else "1111")
print("forged", b"draft" in fetch(b, forged))

ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", P("SUBMISSION")); s.starttls(context=ctx); s.ehlo()
assert "burl" in s.esmtp_features and "imap" in s.esmtp_features["burl"], s.esmtp_features
s.login("alice@example.org", "secret")
s.mail("alice@example.org"); s.rcpt("bob@example.org")
code, msg = s.docmd("BURL", anyone)
print("burl-authuser-not-last", code)
code, msg = s.docmd("BDAT", "0 LAST")
print("bdat-last", code)
s.mail("alice@example.org"); s.rcpt("bob@example.org")
code, msg = s.docmd("BURL", submit + " LAST")
print("burl-submit", code)
s.mail("alice@example.org"); s.rcpt("bob@example.org")
code, msg = s.docmd("BURL", forged + " LAST")
print("burl-forged", code, msg.decode())
# RESETKEY revokes what was made with the old key.
typ, data = a._simple_command("RESETKEY", "Drafts2")
assert typ == "OK", data
s.mail("alice@example.org"); s.rcpt("bob@example.org")
code, msg = s.docmd("BURL", submit + " LAST")
print("burl-after-reset", code)
s.quit()

b.select("INBOX")
typ, data = b.search(None, "ALL")
n = len(data[0].split())
typ, data = b.fetch(b"1:*", "(BODY[])")
flat = b"".join(d if isinstance(d, bytes) else b"".join(d) for d in data)
print("bob-has", n, flat.count(b"the draft's text"))
"#,
    );
    assert_eq!(out.matches("genurlauth-bad").count(), 5, "{out}");
    for want in [
        "mine-by-alice True",
        "mine-by-bob False",
        "anyone-by-bob True",
        "submit-by-imap False",
        "expired False",
        "forged False",
        "burl-authuser-not-last 250",
        "bdat-last 250",
        "burl-submit 250",
        "burl-forged 554 5.6.6",
        "burl-after-reset 554",
        "bob-has 2 2",
    ] {
        assert!(out.contains(want), "{want} in:\n{out}");
    }
}
