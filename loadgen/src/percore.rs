//! The thread-per-core runtime: one OS thread per core, each running its share of the
//! connections as coroutines over one epoll loop (mio).
//!
//! Why coroutines: the workloads are written as straight-line blocking code (send a
//! command, read its answer, check it), which is easy to get right and to read. Run one
//! OS thread per connection and every request costs the kernel a context switch each way;
//! here a connection that would block on its socket suspends instead (a few nanoseconds,
//! a stack switch in user space), and the thread's loop resumes it when epoll says the
//! socket is ready. The session code is the same in both runtimes: [`crate::socket`] asks
//! [`wait`] for readiness when it runs on a coroutine, and blocks the thread otherwise
//! (`--runtime threads`, `verify`, the IMAP prefill).
//!
//! Each thread owns its connections for the whole run (no stealing, nothing shared but the
//! run's atomic counters), so a connection never moves between cores.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

/// Each connection's stack. The sessions keep their buffers on the heap; the largest
/// frames are rustls's handshake and the IMAP answer parser's. Pages are only committed
/// when touched, so this is address space, not memory. Each stack is two mappings (the
/// stack and its guard page): Linux's default `vm.max_map_count` of 65,530 allows about
/// 30,000 connections per generator process.
const STACK_SIZE: usize = 256 << 10;

/// What a suspended connection waits for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// The running coroutine's socket to be readable (or writable, with `write`), until
    /// `deadline`.
    Io { write: bool, deadline: Instant },
    /// Nothing but the time (the open loop's schedule, a pause after an error).
    Until(Instant),
}

/// Why a suspended connection was resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    Ready,
    TimedOut,
}

type Co<R> = Coroutine<Woken, Wait, R, DefaultStack>;

thread_local! {
    /// The running coroutine's yielder; null outside a coroutine.
    static CURRENT: Cell<*const Yielder<Woken, Wait>> = const { Cell::new(std::ptr::null()) };
    /// The running coroutine's slot (its epoll token).
    static CURRENT_ID: Cell<usize> = const { Cell::new(0) };
    /// This thread's epoll registry, while a runtime loop runs on it.
    static REGISTRY: RefCell<Option<Registry>> = const { RefCell::new(None) };
}

/// Whether the caller runs on one of this runtime's coroutines.
pub(crate) fn in_coroutine() -> bool {
    CURRENT.with(|c| !c.get().is_null())
}

/// Suspends the running coroutine until `w` is met. Only called on a coroutine.
pub(crate) fn wait(w: Wait) -> Woken {
    let y = CURRENT.with(|c| c.get());
    assert!(!y.is_null(), "percore::wait outside a coroutine");
    let id = CURRENT_ID.with(|c| c.get());
    // SAFETY: `y` was set by this coroutine's own body to its yielder, which lives as long
    // as the coroutine; we are running on that coroutine's stack, so it is alive.
    let woken = unsafe { &*y }.suspend(w);
    // Others ran in between and set their own.
    CURRENT.with(|c| c.set(y));
    CURRENT_ID.with(|c| c.set(id));
    woken
}

/// Sleeps for `d`: suspends the coroutine, or the thread outside one.
pub(crate) fn sleep(d: Duration) {
    if in_coroutine() {
        wait(Wait::Until(Instant::now() + d));
    } else {
        std::thread::sleep(d);
    }
}

/// Adds a new socket of the running coroutine to its thread's epoll set. Readiness is
/// edge-triggered: a socket is waited on only after a read or write found it not ready.
pub(crate) fn register(fd: RawFd) -> std::io::Result<()> {
    let id = CURRENT_ID.with(|c| c.get());
    REGISTRY.with(|r| match r.borrow().as_ref() {
        Some(reg) => reg.register(
            &mut SourceFd(&fd),
            Token(id),
            Interest::READABLE | Interest::WRITABLE,
        ),
        None => Ok(()),
    })?;
    // A socket closed without being deregistered leaves its fd number free: the same
    // number may come back here for a new socket.
    PENDING.with(|p| {
        if let Some(s) = p.borrow_mut().get_mut(id) {
            *s = (false, false);
        }
    });
    Ok(())
}

thread_local! {
    /// Per slot: readable and writable events seen while the slot was not waiting for them.
    static PENDING: RefCell<Vec<(bool, bool)>> = const { RefCell::new(Vec::new()) };
}

/// Makes the calling thread a batch thread (`SCHED_BATCH`): when a server's answer wakes it,
/// it does not preempt whatever runs on that core, usually the server under test sharing
/// the machine, but waits for its turn. Fewer context switches for both, and the thread
/// then finds more answers ready per wake-up. Best effort: nothing changes if refused.
pub(crate) fn batch_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system call on the calling thread (pid 0) with a valid parameter.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}

struct Slot<R> {
    co: Option<Co<R>>,
    /// What it waits for.
    waiting: Option<Wait>,
    /// The time of this slot's entry in the timer heap, if it has one. Deadlines only move
    /// later (each wait is "now + timeout"), so one entry per slot suffices: when it fires
    /// early for a wait that has since moved its deadline, it is re-armed. A heap entry per
    /// wait instead would hold waits per second × timeout entries.
    armed: Option<Instant>,
}

fn deadline(w: Wait) -> Instant {
    match w {
        Wait::Io { deadline, .. } | Wait::Until(deadline) => deadline,
    }
}

/// Runs `jobs` as coroutines on this thread until all have returned; returns their
/// results in order, or for a job that panicked, the panic's message (the other jobs on
/// the thread carry on).
pub(crate) fn run<R: 'static>(
    jobs: Vec<Box<dyn FnOnce() -> R>>,
) -> std::io::Result<Vec<Result<R, String>>> {
    let mut poll = Poll::new()?;
    REGISTRY.with(|r| {
        poll.registry()
            .try_clone()
            .map(|reg| *r.borrow_mut() = Some(reg))
    })?;
    let n = jobs.len();
    PENDING.with(|p| *p.borrow_mut() = vec![(false, false); n]);
    let mut slots: Vec<Slot<Result<R, String>>> = Vec::with_capacity(n);
    for job in jobs {
        let stack = DefaultStack::new(STACK_SIZE)?;
        let co = Coroutine::with_stack(stack, move |y: &Yielder<Woken, Wait>, _: Woken| {
            CURRENT.with(|c| c.set(y as *const _));
            // Caught here, on the coroutine's own stack: a panic that left `resume` would
            // unwind the loop and drop every other connection of the thread.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).map_err(|p| {
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a connection panicked".into())
            })
        });
        slots.push(Slot {
            co: Some(co),
            waiting: None,
            armed: None,
        });
    }
    let mut results: Vec<Option<Result<R, String>>> = (0..n).map(|_| None).collect();
    let mut ready: VecDeque<(usize, Woken)> = (0..n).map(|i| (i, Woken::Ready)).collect();
    let mut timers: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut live = n;
    let mut events = Events::with_capacity(1024);
    while live > 0 {
        while let Some((id, woken)) = ready.pop_front() {
            let Some(co) = slots[id].co.as_mut() else {
                continue;
            };
            CURRENT_ID.with(|c| c.set(id));
            let r = co.resume(woken);
            CURRENT.with(|c| c.set(std::ptr::null()));
            match r {
                CoroutineResult::Return(v) => {
                    results[id] = Some(v);
                    slots[id].co = None;
                    live -= 1;
                }
                CoroutineResult::Yield(w) => {
                    if let Wait::Io { write, .. } = w {
                        // An event that came while it was running may be the one it waits
                        // for; a spurious wake-up costs one more read that finds nothing.
                        let seen = PENDING.with(|p| {
                            let mut p = p.borrow_mut();
                            let f = if write { &mut p[id].1 } else { &mut p[id].0 };
                            std::mem::take(f)
                        });
                        if seen {
                            ready.push_back((id, Woken::Ready));
                            continue;
                        }
                    }
                    let d = deadline(w);
                    let slot = &mut slots[id];
                    slot.waiting = Some(w);
                    if slot.armed.is_none_or(|a| a > d) {
                        timers.push(Reverse((d, id)));
                        slot.armed = Some(d);
                    }
                }
            }
        }
        if live == 0 {
            break;
        }
        // Sleep until the first timer (perhaps one to re-arm), or an event.
        let timeout = timers
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for ev in events.iter() {
            let id = ev.token().0;
            let (r, w) = (
                ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                ev.is_writable() || ev.is_write_closed() || ev.is_error(),
            );
            match slots.get(id).and_then(|s| s.waiting) {
                Some(Wait::Io { write, .. }) if (write && w) || (!write && r) => {
                    slots[id].waiting = None;
                    ready.push_back((id, Woken::Ready));
                    // The other direction's edge is kept for later.
                    PENDING.with(|p| {
                        let mut p = p.borrow_mut();
                        if write {
                            p[id].0 |= r;
                        } else {
                            p[id].1 |= w;
                        }
                    });
                }
                Some(_) | None if id < n => PENDING.with(|p| {
                    let mut p = p.borrow_mut();
                    p[id].0 |= r;
                    p[id].1 |= w;
                }),
                _ => {}
            }
        }
        let now = Instant::now();
        while let Some(Reverse((at, id))) = timers.peek().copied() {
            if at > now {
                break;
            }
            timers.pop();
            let slot = &mut slots[id];
            if slot.armed != Some(at) {
                // Superseded by an earlier entry of the same slot.
                continue;
            }
            slot.armed = None;
            let Some(w) = slot.waiting else { continue };
            if deadline(w) <= now {
                slot.waiting = None;
                let woken = match w {
                    Wait::Until(_) => Woken::Ready,
                    Wait::Io { .. } => Woken::TimedOut,
                };
                ready.push_back((id, woken));
            } else {
                timers.push(Reverse((deadline(w), id)));
                slot.armed = Some(deadline(w));
            }
        }
    }
    REGISTRY.with(|r| *r.borrow_mut() = None);
    Ok(results
        .into_iter()
        .map(|r| r.expect("every coroutine returned"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn coroutines_interleave_on_one_thread() {
        let start = Instant::now();
        // Ten sleepers of 50 ms each finish in about 50 ms, not 500, on one thread.
        let jobs: Vec<Box<dyn FnOnce() -> usize>> = (0..10usize)
            .map(|i| {
                Box::new(move || {
                    assert!(in_coroutine());
                    sleep(Duration::from_millis(50));
                    i
                }) as Box<dyn FnOnce() -> usize>
            })
            .collect();
        let out: Vec<usize> = run(jobs).unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(out, (0..10).collect::<Vec<_>>());
        assert!(
            start.elapsed() < Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
        assert!(!in_coroutine());
    }

    #[test]
    fn a_panicking_connection_leaves_the_others_running() {
        let jobs: Vec<Box<dyn FnOnce() -> u32>> = vec![
            Box::new(|| {
                sleep(Duration::from_millis(20));
                1
            }),
            Box::new(|| panic!("boom")),
            Box::new(|| {
                sleep(Duration::from_millis(40));
                3
            }),
        ];
        let out = run(jobs).unwrap();
        assert_eq!(out[0], Ok(1));
        assert_eq!(out[1], Err("boom".to_string()));
        assert_eq!(out[2], Ok(3));
    }

    #[test]
    fn sockets_wait_for_readiness_and_time_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // The peer answers the first connection after a pause and never the second.
        let peer = std::thread::spawn(move || {
            let (mut a, _) = l.accept().unwrap();
            let (_b, _) = l.accept().unwrap();
            let mut buf = [0u8; 5];
            a.read_exact(&mut buf).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            a.write_all(b"world").unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        let t = Duration::from_millis(300);
        let jobs: Vec<Box<dyn FnOnce() -> String>> = vec![
            Box::new(move || {
                let mut s = crate::socket::Socket::connect(addr, t).unwrap();
                s.write_all(b"hello").unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).unwrap();
                String::from_utf8_lossy(&buf).into()
            }),
            Box::new(move || {
                sleep(Duration::from_millis(20));
                let mut s = crate::socket::Socket::connect(addr, t).unwrap();
                let mut buf = [0u8; 1];
                format!("{:?}", s.read(&mut buf).map_err(|e| e.kind()))
            }),
        ];
        let out: Vec<String> = run(jobs).unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(out[0], "world");
        assert_eq!(out[1], "Err(TimedOut)");
        peer.join().unwrap();
    }
}
