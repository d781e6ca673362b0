//! Ownership through a real etcd (three members on loopback): exclusive owners, growing
//! epochs, publication fenced by the epoch, a paused owner's lease running out, and etcd
//! losing members.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ringmail_cluster::{ClusterError, Coordinator};

#[test]
fn ownership_is_exclusive_epochs_grow_and_publication_is_fenced() {
    let infra = Infra::start(31000, 3, 1);
    block_on(async {
        let a = Coordinator::join(&infra.config("a", 5)).await.unwrap();
        let b = Coordinator::join(&infra.config("b", 5)).await.unwrap();
        assert_eq!(a.layout(8).await.unwrap(), 8);
        assert_eq!(b.layout(16).await.unwrap(), 8, "the first layout stays");
        assert_eq!(
            a.members().await.unwrap().into_iter().collect::<Vec<_>>(),
            ["a", "b"]
        );

        let e1 = a.acquire(0).await.unwrap().expect("a takes partition 0");
        assert_eq!(b.acquire(0).await.unwrap(), None, "one owner at a time");
        let e_other = b.acquire(1).await.unwrap().expect("b takes partition 1");
        assert_ne!(e1, e_other);
        assert_eq!(
            a.confirm(&[(0, e1), (1, e_other)]).await.unwrap(),
            [true, false]
        );
        assert_eq!(
            b.confirm(&[(0, e1), (1, e_other)]).await.unwrap(),
            [false, true]
        );
        a.publish(0, e1, 1, "test/p00000/manifest/x").await.unwrap();
        assert_eq!(
            b.manifest_pointer(0).await.unwrap(),
            Some((1, "test/p00000/manifest/x".to_string()))
        );

        // A planned move: a releases, b takes over with a higher epoch, and a can no
        // longer publish or confirm.
        assert!(
            !b.release(0, e1, true).await.unwrap(),
            "only the owner's epoch releases"
        );
        assert!(a.release(0, e1, true).await.unwrap());
        let e2 = b.acquire(0).await.unwrap().expect("b takes partition 0");
        assert!(e2 > e1, "epochs grow: {e1} then {e2}");
        assert_eq!(a.confirm(&[(0, e1)]).await.unwrap(), [false]);
        assert!(matches!(
            a.publish(0, e1, 2, "stale").await,
            Err(ClusterError::Fenced { partition: 0, .. })
        ));
        b.publish(0, e2, 2, "test/p00000/manifest/y").await.unwrap();
        assert_eq!(b.manifest_pointer(0).await.unwrap().unwrap().0, 2);

        b.assign(3, "a").await.unwrap();
        b.set_draining("b", true).await.unwrap();
        assert_eq!(
            a.assignments().await.unwrap().get(&3).map(String::as_str),
            Some("a")
        );
        assert!(a.draining().await.unwrap().contains("b"));
        b.set_draining("b", false).await.unwrap();
        assert!(a.draining().await.unwrap().is_empty());

        // Leaving ends b's ownerships at once.
        b.leave().await.unwrap();
        let owners = a.owners().await.unwrap();
        assert!(owners.is_empty(), "{owners:?}");
    });
}

#[test]
fn a_paused_owner_loses_its_lease_and_is_fenced() {
    let infra = Infra::start(31100, 1, 1);
    block_on(async {
        let a = Coordinator::join(&infra.config("a", 2)).await.unwrap();
        let b = Coordinator::join(&infra.config("b", 2)).await.unwrap();
        let e1 = a.acquire(5).await.unwrap().unwrap();
        assert!(a.lease_alive());
        // a stops sending keep-alives, as a paused (SIGSTOP) or cut-off process would.
        let paused = Instant::now();
        a.stop_keepalive();
        let e2 = loop {
            if let Some(e) = b.acquire(5).await.unwrap() {
                break e;
            }
            assert!(paused.elapsed() < Duration::from_secs(15), "no takeover");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let took = paused.elapsed();
        assert!(e2 > e1);
        // etcd may keep a lease up to about a TTL past its last keep-alive.
        assert!(took < Duration::from_secs(6), "takeover after {took:?}");
        // a's own clock says its lease is gone before anyone else could take over.
        assert!(!a.lease_alive());
        assert_eq!(a.confirm(&[(5, e1)]).await.unwrap(), [false]);
        assert!(matches!(
            a.publish(5, e1, 9, "stale").await,
            Err(ClusterError::Fenced { .. })
        ));
        assert!(
            a.acquire(6).await.is_err(),
            "no new ownership without a lease"
        );
    });
}

#[test]
fn losing_one_of_three_etcd_members_is_survived_and_quorum_loss_is_temporary() {
    let mut infra = Infra::start(31200, 3, 1);
    // A lease longer than the outage below (a member stopped, a request timing out, a
    // restart): on a loaded machine that took more than 5 s, and the ownership then ended
    // rightly, which is not what this test is about.
    let cfg = infra.config("a", 15);
    block_on(async {
        let a = Coordinator::join(&cfg).await.unwrap();
        let e = a.acquire(0).await.unwrap().unwrap();
        infra.signal("ETCD1", "KILL");
        // Two of three: everything goes on.
        let e1 = a.acquire(1).await.unwrap().unwrap();
        assert_eq!(a.confirm(&[(0, e), (1, e1)]).await.unwrap(), [true, true]);
        // One of three: no quorum; requests fail with a temporary error, not a hang.
        infra.signal("ETCD2", "STOP");
        // A read in the first moment may still be confirmed by a heartbeat the stopped
        // member answered just before: past an election timeout (1 s) the leader knows.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let t = Instant::now();
        let r = a.confirm(&[(0, e)]).await;
        assert!(
            matches!(&r, Err(err) if err.is_temporary()),
            "{r:?} after {:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
        // Back to quorum (and the killed member restarted): service resumes by itself.
        infra.signal("ETCD2", "CONT");
        infra.restart("etcd1", "ETCD1");
        let t = Instant::now();
        loop {
            match a.confirm(&[(0, e)]).await {
                Ok(v) => {
                    // Within the lease TTL the ownership survives the outage.
                    assert_eq!(v, [true]);
                    break;
                }
                Err(err) => {
                    assert!(err.is_temporary(), "{err}");
                    assert!(
                        t.elapsed() < Duration::from_secs(20),
                        "etcd did not come back"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
}
