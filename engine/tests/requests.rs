//! The engine's API as requests: every request, sent from outside the shards to the one
//! that owns its account (as a remote owner would receive it), does what the method does.

use ringmail_engine::{
    AccountOptions, FlagOp, Flags, NewMessage, Node, NodeConfig, Recipient, Request, Response,
    SpecialUse, Uid,
};

fn node(dir: &std::path::Path) -> Node {
    Node::start(NodeConfig {
        shards: 2,
        partitions: 4,
        ..NodeConfig::new(dir)
    })
    .unwrap()
}

#[test]
fn every_request_is_served_by_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path());
    let h = node.handle();
    let a = || "ann@example.org".to_string();
    let send = |r: Request| futures_lite::future::block_on(h.request(r)).unwrap();
    let message = |body: &[u8]| NewMessage {
        body: body.to_vec(),
        ..Default::default()
    };
    let ensure = || Request::EnsureAccount {
        account: a(),
        options: AccountOptions::default(),
    };
    assert!(matches!(send(ensure()), Response::Done(true)));
    assert!(matches!(send(ensure()), Response::Done(false)));
    let Response::Mailbox(made) = send(Request::CreateMailbox {
        account: a(),
        mailbox: "Work".into(),
        special_use: SpecialUse::None,
    }) else {
        panic!("CreateMailbox")
    };
    assert_eq!(made.name, "Work");
    let Response::Appended(one) = send(Request::Append {
        account: a(),
        mailbox: "INBOX".into(),
        message: message(b"Subject: 1\r\n\r\none\r\n"),
    }) else {
        panic!("Append")
    };
    let Response::Delivered(d) = send(Request::Deliver {
        recipients: vec![Recipient::inbox("ann@example.org")],
        message: message(b"Subject: 2\r\n\r\ntwo\r\n"),
    }) else {
        panic!("Deliver")
    };
    let two = d[0].clone().unwrap();
    let Response::Stored(st) = send(Request::Store {
        account: a(),
        mailbox: "INBOX".into(),
        uids: vec![one.uid],
        op: FlagOp::Add,
        flags: Flags::DELETED,
        keywords: vec!["$Work".into()],
        unchanged_since: None,
    }) else {
        panic!("Store")
    };
    assert_eq!(st.changed.len(), 1);
    let Response::Copied(_, pairs) = send(Request::Copy {
        account: a(),
        from: "INBOX".into(),
        to: "Work".into(),
        uids: vec![two.uid, one.uid],
    }) else {
        panic!("Copy")
    };
    assert_eq!(pairs, vec![(one.uid, Uid(1)), (two.uid, Uid(2))]);
    let Response::Expunged(gone) = send(Request::Expunge {
        account: a(),
        mailbox: "INBOX".into(),
        uids: None,
    }) else {
        panic!("Expunge")
    };
    assert_eq!(gone, vec![one.uid]);
    let Response::Copied(_, moved) = send(Request::Move {
        account: a(),
        from: "Work".into(),
        to: "INBOX".into(),
        uids: vec![Uid(2)],
    }) else {
        panic!("Move")
    };
    assert_eq!(moved.len(), 1);
    let Response::Message(body) = send(Request::Fetch {
        account: a(),
        mailbox: "INBOX".into(),
        uid: moved[0].1,
    }) else {
        panic!("Fetch")
    };
    assert_eq!(body, b"Subject: 2\r\n\r\ntwo\r\n");
    let Response::Messages(msgs) = send(Request::Messages {
        account: a(),
        mailbox: "INBOX".into(),
        from: Uid(1),
        to: Uid(u32::MAX),
    }) else {
        panic!("Messages")
    };
    assert_eq!(msgs.len(), 2);
    send(Request::Subscribe {
        account: a(),
        mailbox: "Work".into(),
        subscribed: true,
    });
    send(Request::RenameMailbox {
        account: a(),
        from: "Work".into(),
        to: "Play".into(),
    });
    let Response::Mailbox(st) = send(Request::Status {
        account: a(),
        mailbox: "Play".into(),
    }) else {
        panic!("Status")
    };
    assert_eq!(st.messages, 1);
    send(Request::DeleteMailbox {
        account: a(),
        mailbox: "Play".into(),
    });
    let Response::Mailboxes(boxes) = send(Request::Mailboxes { account: a() }) else {
        panic!("Mailboxes")
    };
    assert_eq!(
        boxes.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["INBOX"]
    );
    send(Request::SetQuota {
        account: a(),
        bytes: 1 << 20,
        messages: 10,
    });
    let Response::Account(info) = send(Request::AccountInfo { account: a() }) else {
        panic!("AccountInfo")
    };
    assert_eq!((info.quota_bytes, info.used_messages), (1 << 20, 2));
    // Errors come back as errors, whichever shard served them.
    let e = futures_lite::future::block_on(h.request(Request::Status {
        account: a(),
        mailbox: "Nowhere".into(),
    }))
    .unwrap_err();
    assert!(e.to_string().contains("mailbox"), "{e}");
    assert!(matches!(
        send(Request::DeleteAccount { account: a() }),
        Response::Done(true)
    ));
    assert!(matches!(
        send(Request::DeleteAccount { account: a() }),
        Response::Done(false)
    ));
    node.shutdown().unwrap();
}
