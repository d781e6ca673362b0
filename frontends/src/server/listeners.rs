//! Listening sockets, bound by the main thread before any shard starts.
//!
//! Every shard accepts on a socket of its own (SO_REUSEPORT), so the kernel spreads new
//! connections over the cores. Binding them all up front, before the engine opens, means a
//! listener that cannot bind (port in use, address not on this host, a port below 1024
//! without the capability) stops the start with its name and address, instead of a server
//! that runs without it.
//!
//! SO_REUSEPORT lets any process of the same user join a port's group, and the kernel then
//! splits connections between the processes: a second `ringmail serve` with another data
//! directory would silently take part of the mail into another store. So once its sockets
//! listen, the server looks for listening sockets on its ports that are not its own
//! (`/proc/net/tcp`, `/proc/net/tcp6`, matched by socket inode against `/proc/self/fd`) and
//! refuses to start if it finds any. When two instances start at the same instant, each
//! sees the other and both refuse: neither serves half of a port.
//!
//! A server restarted right after it was killed can find its predecessor's sockets still
//! listening, held by no process: io_uring tears a dead process's rings down a moment after
//! it exits, and an accept pending on a ring keeps its socket open until then. Such a
//! socket (in the way of a bind, or sharing a port) is waited for, up to [`LINGER`], before
//! the start fails.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::Listener;
use crate::config::Listen;

/// Pending connections the kernel keeps per socket before the shard accepts them.
const BACKLOG: i32 = 1024;

/// One listener's socket for one shard.
pub struct Bound {
    pub kind: Listener,
    pub addr: SocketAddr,
    pub fd: OwnedFd,
}

/// Every shard's sockets, and the metrics socket (served by shard 0).
pub struct Sockets {
    pub per_shard: Vec<Vec<Bound>>,
    pub metrics: Option<(SocketAddr, OwnedFd)>,
}

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen for {name} on {addr}: {source}{hint}")]
    Bind {
        name: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error(
        "{name} on {addr}: another process also listens on this port (socket inode \
         {inode}{}); only the shards of one ringmail may share a port. Stop the other \
         process or choose another address",
        owner.map(|p| format!(", process {p}")).unwrap_or_default()
    )]
    Shared {
        name: &'static str,
        addr: SocketAddr,
        inode: u64,
        owner: Option<u32>,
    },
    #[error("{a} and {b} are both configured on {addr}")]
    Duplicate {
        a: &'static str,
        b: &'static str,
        addr: SocketAddr,
    },
}

impl Listener {
    /// The listener's name as configured (`[listen]` keys) and as metrics label it.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Smtp => "smtp",
            Listener::Submission => "submission",
            Listener::Smtps => "smtps",
            Listener::Lmtp => "lmtp",
            Listener::Pop3 => "pop3",
            Listener::Pop3s => "pop3s",
            Listener::Imap => "imap",
            Listener::Imaps => "imaps",
            Listener::Cluster => "cluster",
        }
    }

    pub const ALL: [Listener; 9] = [
        Listener::Smtp,
        Listener::Submission,
        Listener::Smtps,
        Listener::Lmtp,
        Listener::Pop3,
        Listener::Pop3s,
        Listener::Imap,
        Listener::Imaps,
        Listener::Cluster,
    ];
}

/// The configured protocol listeners, in `Listener::ALL` order.
pub fn configured(l: &Listen, cluster: Option<SocketAddr>) -> Vec<(Listener, SocketAddr)> {
    let addrs = [
        l.smtp,
        l.submission,
        l.smtps,
        l.lmtp,
        l.pop3,
        l.pop3s,
        l.imap,
        l.imaps,
        cluster,
    ];
    Listener::ALL
        .into_iter()
        .zip(addrs)
        .filter_map(|(k, a)| a.map(|a| (k, a)))
        .collect()
}

/// How long a start waits for listening sockets no process holds (a killed predecessor's).
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds `shards` sockets for every configured listener and one for metrics, and checks
/// that no other process shares their ports.
pub fn bind_all(
    l: &Listen,
    cluster: Option<SocketAddr>,
    shards: usize,
) -> Result<Sockets, ListenError> {
    let deadline = std::time::Instant::now() + LINGER;
    loop {
        match try_bind_all(l, cluster, shards) {
            Err(e) if e.lingering() && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

impl ListenError {
    /// Whether what is in the way is a socket no process holds (it goes away by itself).
    fn lingering(&self) -> bool {
        match self {
            ListenError::Shared { owner, .. } => owner.is_none(),
            ListenError::Bind { addr, source, .. }
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                let holders: Vec<ListeningSocket> = listening_sockets()
                    .into_iter()
                    .filter(|s| overlaps(s.addr, *addr))
                    .collect();
                !holders.is_empty() && holders.iter().all(|s| owner_of(s.inode).is_none())
            }
            _ => false,
        }
    }
}

fn try_bind_all(
    l: &Listen,
    cluster: Option<SocketAddr>,
    shards: usize,
) -> Result<Sockets, ListenError> {
    let listeners = configured(l, cluster);
    let mut seen: Vec<(&'static str, SocketAddr)> = Vec::new();
    for (name, addr) in listeners
        .iter()
        .map(|(k, a)| (k.name(), *a))
        .chain(l.metrics.map(|a| ("metrics", a)))
    {
        if let Some((a, _)) = seen.iter().find(|(_, s)| *s == addr) {
            return Err(ListenError::Duplicate { a, b: name, addr });
        }
        seen.push((name, addr));
    }
    let mut per_shard: Vec<Vec<Bound>> = (0..shards).map(|_| Vec::new()).collect();
    for &(kind, addr) in &listeners {
        for shard in per_shard.iter_mut() {
            let fd = bind(addr, true).map_err(|e| bind_error(kind.name(), addr, e))?;
            shard.push(Bound { kind, addr, fd });
        }
    }
    // Metrics are served by one shard: no SO_REUSEPORT, so nothing can join it.
    let metrics = match l.metrics {
        Some(addr) => Some((
            addr,
            bind(addr, false).map_err(|e| bind_error("metrics", addr, e))?,
        )),
        None => None,
    };
    let ours: HashSet<u64> = own_socket_inodes();
    if !ours.is_empty() {
        let listening = listening_sockets();
        for &(kind, addr) in &listeners {
            if let Some(s) = listening
                .iter()
                .find(|s| !ours.contains(&s.inode) && overlaps(s.addr, addr))
            {
                return Err(ListenError::Shared {
                    name: kind.name(),
                    addr,
                    inode: s.inode,
                    owner: owner_of(s.inode),
                });
            }
        }
    }
    Ok(Sockets { per_shard, metrics })
}

fn bind_error(name: &'static str, addr: SocketAddr, source: std::io::Error) -> ListenError {
    let hint = match source.kind() {
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE, e.g. \
             AmbientCapabilities=CAP_NET_BIND_SERVICE under systemd)"
        }
        std::io::ErrorKind::AddrNotAvailable => " (no interface of this host has that address)",
        std::io::ErrorKind::AddrInUse => " (another program listens there)",
        _ => "",
    };
    ListenError::Bind {
        name,
        addr,
        source,
        hint,
    }
}

fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<OwnedFd> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    // Restarting while old connections sit in TIME_WAIT must not fail the bind.
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(OwnedFd::from(s))
}

/// A listening socket as `/proc/net/tcp*` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ListeningSocket {
    addr: SocketAddr,
    inode: u64,
}

/// Whether a socket listening on `a` receives connections meant for `b`.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        && a.is_ipv4() == b.is_ipv4()
}

/// The inodes of this process's sockets (`/proc/self/fd/N -> socket:[inode]`).
fn own_socket_inodes() -> HashSet<u64> {
    socket_inodes_of("/proc/self/fd")
}

fn socket_inodes_of(dir: &str) -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            let t = t.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The process holding a socket, if this user may look (for the error message only).
fn owner_of(inode: u64) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .find(|pid| socket_inodes_of(&format!("/proc/{pid}/fd")).contains(&inode))
}

/// Every listening TCP socket of this network namespace.
fn listening_sockets() -> Vec<ListeningSocket> {
    let mut out = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(path) {
            out.extend(text.lines().skip(1).filter_map(|l| parse_proc_line(l, v6)));
        }
    }
    out
}

/// One line of `/proc/net/tcp{,6}`: `sl local_address rem_address st ... inode ...`, where
/// the address is the IP in hex (32-bit words in host byte order) and the port in hex, and
/// state `0A` is LISTEN.
fn parse_proc_line(line: &str, v6: bool) -> Option<ListeningSocket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
    if *state != "0A" {
        return None;
    }
    let (ip_hex, port_hex) = local.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let words: Vec<u32> = (0..ip_hex.len() / 8)
        .map(|i| u32::from_str_radix(ip_hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let ip = match (v6, words.as_slice()) {
        (false, [w]) => IpAddr::from(w.to_ne_bytes()),
        (true, [a, b, c, d]) => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::from(bytes)
        }
        _ => return None,
    };
    Some(ListeningSocket {
        addr: SocketAddr::new(ip, port),
        inode: inode.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines_parse() {
        // 127.0.0.1:2525, listening, inode 12345 (on a little-endian machine).
        let l = "   0: 0100007F:09DD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0";
        let s = parse_proc_line(l, false).unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(s.addr, "127.0.0.1:2525".parse::<SocketAddr>().unwrap());
        }
        assert_eq!(s.inode, 12345);
        // An established connection is not a listener.
        let l = l.replace(" 0A ", " 01 ");
        assert!(parse_proc_line(&l, false).is_none());
        // ::1 port 25
        let l6 = "   0: 00000000000000000000000001000000:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0";
        let s = parse_proc_line(l6, true).unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(s.addr, "[::1]:25".parse::<SocketAddr>().unwrap());
        }
    }

    #[test]
    fn our_own_sockets_are_not_foreign_and_duplicates_are_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let l = Listen {
            smtp: Some(addr),
            submission: None,
            smtps: None,
            lmtp: None,
            imap: None,
            imaps: None,
            pop3: None,
            pop3s: None,
            metrics: None,
        };
        let first = bind_all(&l, None, 2).expect("a free port binds");
        assert_eq!(first.per_shard.len(), 2);
        let inodes = own_socket_inodes();
        let ours = listening_sockets()
            .into_iter()
            .filter(|s| s.addr == addr && inodes.contains(&s.inode))
            .count();
        assert_eq!(ours, 2);
        let a25: SocketAddr = "127.0.0.1:25".parse().unwrap();
        assert!(overlaps("0.0.0.0:25".parse().unwrap(), a25));
        assert!(!overlaps("127.0.0.2:25".parse().unwrap(), a25));
        let dup = Listen {
            lmtp: Some(addr),
            ..l
        };
        assert!(matches!(
            bind_all(&dup, None, 1),
            Err(ListenError::Duplicate { .. })
        ));
    }
}
