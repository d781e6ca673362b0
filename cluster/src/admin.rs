//! The operator's commands (`ringmail cluster status|move|drain`): read and write etcd as
//! an observer (no lease, never an owner) and list object storage; the nodes do the moving.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ringmail_engine::remote::Manifest;

use crate::config::ClusterConfig;
use crate::coordinator::Coordinator;
use crate::error::{ClusterError, Result};
use crate::objects::Objects;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClusterError::Config(format!("a runtime: {e}")))
}

/// The cluster as etcd and object storage say now: nodes (lease time left, partitions,
/// draining), and per partition its owner, epoch, published manifest and the tail's length
/// (batches not yet in a sealed segment: what a takeover would replay).
pub fn status(cfg: &ClusterConfig) -> Result<String> {
    runtime()?.block_on(async {
        let c = Coordinator::observe(cfg).await?;
        let objects = Objects::new(cfg)?;
        let partitions = c.layout(0).await.unwrap_or(0);
        let leases = c.member_leases().await?;
        let draining = c.draining().await?;
        let owners = c.owners().await?;
        let assigned = c.assignments().await?;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cluster {}: {} partitions, {} nodes",
            cfg.name,
            partitions,
            leases.len()
        );
        let _ = writeln!(out, "\nnode            lease left  partitions  state");
        for (node, lease) in &leases {
            let left = match c.lease_ttl_left(*lease).await? {
                Some(s) => format!("{s} s"),
                None => "expired".into(),
            };
            let owns = owners.values().filter(|o| &o.node == node).count();
            let state = if draining.contains(node) {
                "draining"
            } else {
                "serving"
            };
            let _ = writeln!(out, "{node:<15} {left:>10}  {owns:>10}  {state}");
        }
        let _ = writeln!(
            out,
            "\npartition  owner           epoch      manifest  published  tail chunks  assigned"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for p in 0..partitions {
            let (owner, epoch) = match owners.get(&p) {
                Some(o) => (o.node.clone(), o.epoch.to_string()),
                None => ("-".into(), "-".into()),
            };
            let (serial, age, tail) = match c.manifest_pointer(p).await? {
                Some((serial, key)) => {
                    let m = Manifest::decode(&objects.get_raw(&key).await?).map_err(|e| {
                        ClusterError::Damaged {
                            key: key.clone(),
                            detail: e.to_string(),
                        }
                    })?;
                    let mut chunks = 0;
                    for (epoch, from, to) in m.tail_ranges() {
                        let firsts = objects.chunk_firsts(p, epoch).await?;
                        chunks +=
                            ringmail_engine::remote::chunk::candidates(from, to, &firsts).len();
                    }
                    (
                        serial.to_string(),
                        format!("{} s ago", now.saturating_sub(m.created_unix)),
                        chunks.to_string(),
                    )
                }
                None => ("-".into(), "-".into(), "-".into()),
            };
            let assigned = assigned.get(&p).map(String::as_str).unwrap_or("-");
            let _ = writeln!(
                out,
                "{p:>9}  {owner:<15} {epoch:>5}  {serial:>8}  {age:>9}  {tail:>11}  {assigned}"
            );
        }
        Ok(out)
    })
}

/// Asks for `partition` to move to `node` and, with `wait`, waits until `node` owns it
/// (the old owner publishes and releases; the new one opens). Returns how long it took.
pub fn move_partition(
    cfg: &ClusterConfig,
    partition: u32,
    node: &str,
    wait: Option<Duration>,
) -> Result<Duration> {
    runtime()?.block_on(async {
        let c = Coordinator::observe(cfg).await?;
        let partitions = c.layout(0).await?;
        if partition >= partitions {
            return Err(ClusterError::Config(format!(
                "the cluster has partitions 0 to {}",
                partitions.saturating_sub(1)
            )));
        }
        if !c.members().await?.contains(node) {
            return Err(ClusterError::Config(format!("{node} is not a member now")));
        }
        let started = Instant::now();
        c.assign(partition, node).await?;
        if let Some(limit) = wait {
            // Until the node owns it and serves it (opened, not just acquired).
            loop {
                let owner = c.owners().await?.get(&partition).cloned();
                let serving = c.serving().await?.get(&partition).cloned();
                if let (Some(o), Some((n, e))) = (owner, serving) {
                    if o.node == node && n == node && e == o.epoch {
                        break;
                    }
                }
                if started.elapsed() > limit {
                    return Err(ClusterError::Config(format!(
                        "{node} did not take partition {partition} over within {limit:?}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(started.elapsed())
    })
}

/// Marks `node` as draining (its partitions move to the other nodes) or, with `undo`, as
/// serving again; with `wait`, waits until a draining node owns nothing.
pub fn drain(
    cfg: &ClusterConfig,
    node: &str,
    undo: bool,
    wait: Option<Duration>,
) -> Result<Duration> {
    runtime()?.block_on(async {
        let c = Coordinator::observe(cfg).await?;
        let started = Instant::now();
        c.set_draining(node, !undo).await?;
        if !undo {
            // Assignments to the drained node would pin partitions to it.
            for (p, n) in c.assignments().await? {
                if n == node {
                    c.unassign(p).await?;
                }
            }
            if let Some(limit) = wait {
                let partitions = c.layout(0).await? as usize;
                // Until the node owns nothing and every partition is owned again.
                loop {
                    let owners = c.owners().await?;
                    let serving = c.serving().await?;
                    let all_served = owners.iter().all(|(p, o)| {
                        serving
                            .get(p)
                            .is_some_and(|(n, e)| *n == o.node && *e == o.epoch)
                    });
                    if owners.len() == partitions
                        && all_served
                        && owners.values().all(|o| o.node != node)
                    {
                        break;
                    }
                    if started.elapsed() > limit {
                        return Err(ClusterError::Config(format!(
                            "{node} still owns partitions after {limit:?}"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Ok(started.elapsed())
    })
}
