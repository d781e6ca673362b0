//! The mailbox model the protocols need: mailboxes, flags and keywords, CONDSTORE,
//! COPY/MOVE with single-instance storage, quotas, and refusals with the right errors.

mod common;

use common::*;
use ringmail_engine::{
    AccountOptions, Error, FlagOp, Flags, NewMessage, Recipient, SpecialUse, StoreError, Uid,
};

const A: &str = "model@example.org";
const B: &str = "other@example.org";

fn refused(e: Error) -> StoreError {
    e.store()
        .cloned()
        .unwrap_or_else(|| panic!("expected a refusal, got {e}"))
}

#[test]
fn mailbox_operations_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open(&d, config()).await;
        p.create_account(A, &AccountOptions::standard())
            .await
            .unwrap();
        assert_eq!(
            refused(
                p.create_account(A, &AccountOptions::default())
                    .await
                    .unwrap_err()
            ),
            StoreError::AccountExists
        );
        let boxes = p.mailboxes(A).unwrap();
        let names: Vec<&str> = boxes.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
        );
        assert_eq!(boxes[4].special_use, SpecialUse::Sent);
        // UIDVALIDITY differs between mailboxes and changes when a name is recreated.
        let uvs: std::collections::HashSet<u32> = boxes.iter().map(|m| m.uidvalidity.0).collect();
        assert_eq!(uvs.len(), boxes.len());
        assert_eq!(p.status(A, "inbox").unwrap().name, "INBOX");
        assert_eq!(
            refused(p.delete_mailbox(A, "INBOX").await.unwrap_err()),
            StoreError::CannotDeleteInbox
        );
        assert_eq!(
            refused(
                p.create_mailbox(A, "Sent", SpecialUse::None)
                    .await
                    .unwrap_err()
            ),
            StoreError::MailboxExists
        );
        for bad in ["", "/x", "x/", "a//b", "a*b", "a%b", "a\nb"] {
            assert!(
                matches!(
                    refused(
                        p.create_mailbox(A, bad, SpecialUse::None)
                            .await
                            .unwrap_err()
                    ),
                    StoreError::InvalidName(_)
                ),
                "{bad:?}"
            );
        }
        let old = p
            .create_mailbox(A, "Lists", SpecialUse::None)
            .await
            .unwrap();
        p.append(A, "Lists", &new_message(message(1, 500)))
            .await
            .unwrap();
        p.delete_mailbox(A, "Lists").await.unwrap();
        assert_eq!(
            refused(p.status(A, "Lists").unwrap_err()),
            StoreError::NoSuchMailbox
        );
        let new = p
            .create_mailbox(A, "Lists", SpecialUse::None)
            .await
            .unwrap();
        assert!(new.uidvalidity != old.uidvalidity && new.uidnext == Uid(1));
        p.subscribe(A, "Lists", true).await.unwrap();
        assert_eq!(p.subscriptions(A).unwrap(), vec!["Lists".to_string()]);
        assert!(p.status(A, "Lists").unwrap().subscribed);
        assert_eq!(
            refused(
                p.append("nobody@example.org", "INBOX", &new_message(vec![1]))
                    .await
                    .unwrap_err()
            ),
            StoreError::NoSuchAccount
        );
        assert_eq!(
            refused(p.fetch(A, "INBOX", Uid(99)).await.unwrap_err()),
            StoreError::NoSuchMessage
        );
        p.close().await.unwrap();
    });
}

#[test]
fn flags_keywords_and_condstore() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, config(), A).await;
        let msg = NewMessage {
            body: message(1, 1000),
            flags: Flags::SEEN,
            keywords: vec!["$Forwarded".into()],
            internal_date: Some(1_700_000_000),
            ..Default::default()
        };
        let a1 = p.append(A, "INBOX", &msg).await.unwrap();
        let a2 = p
            .append(A, "INBOX", &new_message(message(2, 1000)))
            .await
            .unwrap();
        let m1 = p.message(A, "INBOX", a1.uid).unwrap();
        assert_eq!(m1.internal_date, 1_700_000_000);
        assert!(m1.flags.contains(Flags::SEEN.union(Flags::keyword(0))));
        let st = p.status(A, "INBOX").unwrap();
        assert_eq!((st.messages, st.unseen), (2, 1));
        let hm = st.highest_modseq;
        // STORE +FLAGS: only the changed message gets a new modseq.
        let r = p
            .store(
                A,
                "INBOX",
                &[a1.uid, a2.uid],
                FlagOp::Add,
                Flags::SEEN,
                &["Work".into()],
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.changed.len(), 2);
        assert!(r.changed.iter().all(|m| m.modseq > hm));
        assert_eq!(
            p.keywords(A).unwrap(),
            vec!["$Forwarded".to_string(), "Work".to_string()]
        );
        assert_eq!(p.status(A, "INBOX").unwrap().unseen, 0);
        // UNCHANGEDSINCE older than the message's modseq: refused for that message.
        let r = p
            .store(
                A,
                "INBOX",
                &[a1.uid],
                FlagOp::Add,
                Flags::FLAGGED,
                &[],
                Some(hm.0),
            )
            .await
            .unwrap();
        assert_eq!(r.modified, vec![a1.uid]);
        assert!(!p
            .message(A, "INBOX", a1.uid)
            .unwrap()
            .flags
            .contains(Flags::FLAGGED));
        // Removing an unknown keyword defines nothing.
        p.store(
            A,
            "INBOX",
            &[a1.uid],
            FlagOp::Remove,
            Flags::empty(),
            &["Never".into()],
            None,
        )
        .await
        .unwrap();
        assert_eq!(p.keywords(A).unwrap().len(), 2);
        // EXPUNGE without UIDs removes \Deleted messages.
        p.store(
            A,
            "INBOX",
            &[a2.uid],
            FlagOp::Add,
            Flags::DELETED,
            &[],
            None,
        )
        .await
        .unwrap();
        assert_eq!(p.expunge(A, "INBOX", None).await.unwrap(), vec![a2.uid]);
        assert_eq!(p.status(A, "INBOX").unwrap().messages, 1);
        // Too many keywords.
        let many: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
        assert!(matches!(
            refused(
                p.store(
                    A,
                    "INBOX",
                    &[a1.uid],
                    FlagOp::Add,
                    Flags::empty(),
                    &many,
                    None
                )
                .await
                .unwrap_err()
            ),
            StoreError::TooManyKeywords { .. }
        ));
        p.close().await.unwrap();
    });
}

#[test]
fn copy_move_and_single_instance_storage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, config(), A).await;
        p.create_account(B, &AccountOptions::default())
            .await
            .unwrap();
        // One delivery to three mailboxes of two accounts: stored once.
        let rcpts = vec![
            Recipient::inbox(A),
            Recipient::inbox(B),
            Recipient {
                account: A.into(),
                mailbox: "Archive".into(),
            },
            Recipient::inbox("ghost@example.org"),
        ];
        let before = p.stats();
        let res = p.deliver(&rcpts, &new_message(message(7, 20_000))).await;
        assert!(res[..3].iter().all(|r| r.is_ok()));
        assert_eq!(
            refused(
                res[3]
                    .as_ref()
                    .unwrap_err()
                    .store()
                    .cloned()
                    .map(Error::Store)
                    .unwrap()
            ),
            StoreError::NoSuchAccount
        );
        let after = p.stats();
        assert_eq!(after.blobs, before.blobs + 1);
        assert_eq!(after.messages, before.messages + 3);
        let blob = res[0].as_ref().unwrap().blob;
        assert!(res.iter().take(3).all(|r| r.as_ref().unwrap().blob == blob));
        // COPY shares the blob; MOVE keeps it; EXPUNGE of all references frees it.
        let (_, pairs) = p.copy(A, "INBOX", "Trash", &[Uid(1)]).await.unwrap();
        assert_eq!(pairs, vec![(Uid(1), Uid(1))]);
        assert_eq!(p.stats().blobs, after.blobs);
        let (_, moved) = p
            .move_messages(A, "Archive", "Drafts", &[Uid(1)])
            .await
            .unwrap();
        assert_eq!(moved, vec![(Uid(1), Uid(1))]);
        assert_eq!(p.status(A, "Archive").unwrap().messages, 0);
        let body = p.fetch(A, "Drafts", Uid(1)).await.unwrap();
        assert!(*body == message(7, 20_000));
        for (acct, mb) in [(A, "INBOX"), (A, "Trash"), (A, "Drafts")] {
            p.expunge(acct, mb, Some(&[Uid(1)])).await.unwrap();
        }
        assert_eq!(p.stats().blobs, after.blobs, "B still refers to it");
        p.expunge(B, "INBOX", Some(&[Uid(1)])).await.unwrap();
        assert_eq!(p.stats().blobs, before.blobs);
        p.close().await.unwrap();
    });
}

#[test]
fn quotas_are_enforced_at_append() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open(&d, config()).await;
        p.create_account(
            A,
            &AccountOptions {
                quota_bytes: 10_000,
                quota_messages: 3,
                mailboxes: vec![],
            },
        )
        .await
        .unwrap();
        p.append(A, "INBOX", &new_message(vec![b'x'; 6000]))
            .await
            .unwrap();
        let e = refused(
            p.append(A, "INBOX", &new_message(vec![b'x'; 6000]))
                .await
                .unwrap_err(),
        );
        assert!(
            matches!(
                e,
                StoreError::OverQuota {
                    what: "storage",
                    ..
                }
            ),
            "{e:?}"
        );
        p.append(A, "INBOX", &new_message(vec![b'x'; 100]))
            .await
            .unwrap();
        p.append(A, "INBOX", &new_message(vec![b'x'; 100]))
            .await
            .unwrap();
        let e = refused(
            p.append(A, "INBOX", &new_message(vec![b'x'; 100]))
                .await
                .unwrap_err(),
        );
        assert!(
            matches!(
                e,
                StoreError::OverQuota {
                    what: "message count",
                    ..
                }
            ),
            "{e:?}"
        );
        p.expunge(A, "INBOX", Some(&[Uid(1)])).await.unwrap();
        p.append(A, "INBOX", &new_message(vec![b'x'; 6000]))
            .await
            .unwrap();
        let info = p.account_info(A).unwrap();
        assert_eq!((info.used_messages, info.used_bytes), (3, 6200));
        p.set_quota(A, 0, 0).await.unwrap();
        p.append(A, "INBOX", &new_message(vec![b'x'; 6000]))
            .await
            .unwrap();
        let e = refused(
            p.append(A, "INBOX", &new_message(vec![0; (256 << 20) + 1]))
                .await
                .unwrap_err(),
        );
        assert!(matches!(e, StoreError::MessageTooLarge { .. }));
        p.close().await.unwrap();
        // Usage survives a restart.
        let p = open(&d, config()).await;
        assert_eq!(p.account_info(A).unwrap().used_messages, 4);
    });
}
