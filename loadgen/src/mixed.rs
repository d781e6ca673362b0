//! The `mixed` workload, a provider's day: one run whose connections are deliveries (SMTP or
//! LMTP), IMAP users and POP3 users at set ratios (`smtp:60,imap:30,pop3:10`), each kind
//! against its own target and running the same code as its single-protocol workload. The
//! report names each row after its protocol (`smtp.deliver`, `imap.fetch-body`, `pop3.retr`).
//!
//! Connection `w` keeps its index among all connections, so the IMAP and POP3 accounts are
//! partitioned over all of them (no two connections share a mailbox, whatever their kind),
//! while deliveries go to any user, and so into the mailboxes being read.

use std::net::SocketAddr;

use crate::run::Workload;

/// The kinds of connections and where each goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mixed {
    /// Kind and share, in the order given.
    pub shares: Vec<(Workload, u32)>,
    /// Where each kind goes: a kind listed several times (the nodes of a cluster) spreads
    /// its connections over them, round robin.
    pub targets: Vec<(Workload, SocketAddr)>,
}

/// The kinds a mixed run may hold.
pub const KINDS: [Workload; 4] = [
    Workload::Smtp,
    Workload::Lmtp,
    Workload::Imap,
    Workload::Pop3,
];

/// The report prefix of a kind's rows.
pub fn prefix(w: Workload) -> &'static str {
    match w {
        Workload::Smtp => "smtp.",
        Workload::Lmtp => "lmtp.",
        Workload::Imap => "imap.",
        Workload::Pop3 => "pop3.",
        Workload::Mixed => "",
    }
}

pub fn name(w: Workload) -> &'static str {
    prefix(w).trim_end_matches('.')
}

impl Mixed {
    /// `smtp:60,imap:30,pop3:10` (kinds: smtp, lmtp, imap, pop3).
    pub fn parse_ratio(s: &str) -> Result<Vec<(Workload, u32)>, String> {
        let mut shares: Vec<(Workload, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (n, w) = part.split_once(':').unwrap_or((part, "1"));
            let kind = KINDS
                .into_iter()
                .find(|k| name(*k) == n.trim())
                .ok_or_else(|| format!("{n:?}: not one of smtp, lmtp, imap, pop3"))?;
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the share is not a whole number"))?;
            if shares.iter().any(|(k, _)| *k == kind) {
                return Err(format!("{n} is given twice"));
            }
            if w > 0 {
                shares.push((kind, w));
            }
        }
        if shares.is_empty() {
            return Err("no kind of connection with a share above 0".into());
        }
        Ok(shares)
    }

    pub fn target(&self, kind: Workload) -> Option<SocketAddr> {
        self.targets_of(kind).first().copied()
    }

    /// Every target of `kind`, in the order given.
    pub fn targets_of(&self, kind: Workload) -> Vec<SocketAddr> {
        self.targets
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|t| t.1)
            .collect()
    }

    /// The kind of each of `n` connections: in proportion to the shares (every kind gets
    /// at least one), interleaved so each kind is spread over the connection indices.
    pub fn roles(&self, n: usize) -> Result<Vec<Workload>, String> {
        if n < self.shares.len() {
            return Err(format!(
                "{} kinds of connections need at least as many --connections",
                self.shares.len()
            ));
        }
        let total: u64 = self.shares.iter().map(|s| s.1 as u64).sum();
        // Largest remainder, then at least one each (taken from the largest).
        let mut counts: Vec<usize> = self
            .shares
            .iter()
            .map(|s| (s.1 as u64 * n as u64 / total) as usize)
            .collect();
        let mut rest: Vec<usize> = (0..counts.len()).collect();
        rest.sort_by_key(|&i| std::cmp::Reverse((self.shares[i].1 as u64 * n as u64) % total));
        for &i in rest.iter().take(n - counts.iter().sum::<usize>()) {
            counts[i] += 1;
        }
        while let Some(i) = counts.iter().position(|&c| c == 0) {
            let big = (0..counts.len()).max_by_key(|&j| counts[j]).expect("kinds");
            counts[big] -= 1;
            counts[i] += 1;
        }
        // Smooth weighted round robin over the counts.
        let mut credit = vec![0i64; counts.len()];
        let mut roles = Vec::with_capacity(n);
        for _ in 0..n {
            for (c, k) in credit.iter_mut().zip(&counts) {
                *c += *k as i64;
            }
            let i = (0..credit.len()).max_by_key(|&i| credit[i]).expect("kinds");
            credit[i] -= n as i64;
            roles.push(self.shares[i].0);
        }
        Ok(roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mixed(s: &str) -> Mixed {
        Mixed {
            shares: Mixed::parse_ratio(s).unwrap(),
            targets: vec![],
        }
    }

    #[test]
    fn a_kind_with_several_targets_spreads_over_them() {
        let a: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:25".parse().unwrap();
        let i: SocketAddr = "127.0.0.1:143".parse().unwrap();
        let mut cfg = crate::run::Config::new(Workload::Mixed, a);
        cfg.mixed = Some(Mixed {
            shares: Mixed::parse_ratio("smtp:1,imap:1").unwrap(),
            targets: vec![
                (Workload::Smtp, a),
                (Workload::Imap, i),
                (Workload::Smtp, b),
            ],
        });
        let smtp = cfg.for_kind(Workload::Smtp);
        assert_eq!((smtp.target_of(0), smtp.target_of(1)), (a, b));
        let imap = cfg.for_kind(Workload::Imap);
        assert_eq!((imap.target_of(0), imap.target_of(1)), (i, i));
    }

    #[test]
    fn ratios_parse_and_split_the_connections() {
        let m = mixed("smtp:60, imap:30,pop3:10");
        let r = m.roles(10).unwrap();
        let count = |k| r.iter().filter(|&&x| x == k).count();
        assert_eq!(
            (
                count(Workload::Smtp),
                count(Workload::Imap),
                count(Workload::Pop3)
            ),
            (6, 3, 1)
        );
        // Interleaved, not in blocks.
        assert_ne!(&r[..3], &[Workload::Smtp; 3]);
        let r = m.roles(3).unwrap();
        assert_eq!(r.len(), 3);
        assert!(KINDS[..]
            .iter()
            .all(|k| *k == Workload::Lmtp || r.contains(k)));
        assert!(m.roles(2).is_err());
        let r = mixed("lmtp:2,imap:1").roles(7).unwrap();
        assert_eq!(r.iter().filter(|&&x| x == Workload::Lmtp).count(), 5);
        assert!(Mixed::parse_ratio("smtp:1,smtp:2").is_err());
        assert!(Mixed::parse_ratio("imap:0").is_err());
        assert!(Mixed::parse_ratio("http:3").unwrap_err().contains("pop3"));
        assert!(Mixed::parse_ratio("pop3:x").is_err());
        assert_eq!(
            Mixed::parse_ratio("imap").unwrap(),
            vec![(Workload::Imap, 1)]
        );
    }
}
