//! Deadlines and the shutdown signal for every connection of one shard.
//!
//! Each read and write of a session has a time limit, and a pending read also ends when the
//! node stops. A glommio timer per operation (a timer-wheel insert and removal and an
//! allocation) and a listener on the node's stop channel per read (a registration shared
//! across threads) cost about 3 % of a delivering shard's CPU, for limits counted in
//! minutes. So each connection holds a slot in this shard-local table, an operation only
//! writes its deadline there, and one task per shard looks at the table once a second: it
//! wakes the connections whose deadline passed, and, once the node stops, every connection
//! waiting to read. A limit is kept to within a second (`TICK`). In cluster mode a session
//! on a partition also ends, within a tick, once the partition is no longer served here
//! (`end_when`): its client must log in again and reach the new owner.
//!
//! ```text
//! Conn ── within(limit, op) ──► slot { deadline, waker }   (this shard's Watch)
//!                                  ▲
//! tick task, every TICK ───────────┘ deadline passed: expired, wake; node stopping: wake
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// How often deadlines are looked at: how late a limit may fire.
const TICK: Duration = Duration::from_secs(1);

/// Why an operation ended before its future did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fired {
    /// The time limit passed.
    TimedOut,
    /// The node is shutting down (only operations that asked to be stopped).
    Stopping,
    /// The connection's `end_when` check came true (only operations that asked to be
    /// stopped): what it serves moved away.
    Moved,
}

#[derive(Default)]
struct Slot {
    deadline: Option<Instant>,
    /// Whether the pending operation ends when the node stops.
    stoppable: bool,
    expired: bool,
    /// The connection ends when this says so (see [`Watched::end_when`]).
    end_when: Option<Rc<dyn Fn() -> bool>>,
    moved: bool,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<usize>,
    stopping: bool,
}

impl Table {
    /// Marks the armed slots `fire` picks as expired and hands back their wakers, to be
    /// woken once the table is no longer borrowed.
    fn fire(&mut self, fire: impl Fn(&Slot) -> bool, wakers: &mut Vec<Waker>) {
        for s in self.slots.iter_mut().filter(|s| s.deadline.is_some()) {
            if fire(s) {
                s.expired = true;
                wakers.extend(s.waker.take());
            }
        }
    }
}

/// One shard's table. Lives on its shard only.
#[derive(Clone, Default)]
pub struct Watch(Rc<RefCell<Table>>);

impl Watch {
    /// A slot for a new connection; given back when the `Watched` drops.
    pub fn watch(&self) -> Watched {
        let mut t = self.0.borrow_mut();
        let slot = match t.free.pop() {
            Some(i) => i,
            None => {
                t.slots.push(Slot::default());
                t.slots.len() - 1
            }
        };
        Watched {
            table: self.0.clone(),
            slot,
        }
    }

    /// The shard's tick task: runs until the node stops, then wakes every stoppable
    /// operation, and goes on enforcing deadlines (a session's last reply still has one).
    pub async fn run(self, stop: async_channel::Receiver<()>) {
        let mut stopped = false;
        let mut wakers = Vec::new();
        loop {
            let woke_by_stop = if stopped {
                glommio::timer::sleep(TICK).await;
                false
            } else {
                futures_lite::future::or(
                    async {
                        glommio::timer::sleep(TICK).await;
                        false
                    },
                    async {
                        let _ = stop.recv().await;
                        true
                    },
                )
                .await
            };
            {
                let mut t = self.0.borrow_mut();
                if woke_by_stop {
                    stopped = true;
                    t.stopping = true;
                    t.fire(|s| s.stoppable, &mut wakers);
                }
                let now = Instant::now();
                t.fire(|s| s.deadline.is_some_and(|d| d <= now), &mut wakers);
                for s in t.slots.iter_mut().filter(|s| s.deadline.is_some()) {
                    if s.stoppable && !s.moved && s.end_when.as_ref().is_some_and(|f| f()) {
                        s.moved = true;
                        wakers.extend(s.waker.take());
                    }
                }
            }
            wakers.drain(..).for_each(Waker::wake);
            if Rc::strong_count(&self.0) == 1 {
                // The server is gone: nothing is left to watch.
                return;
            }
        }
    }

    #[cfg(test)]
    fn slots_in_use(&self) -> usize {
        let t = self.0.borrow();
        t.slots.len() - t.free.len()
    }
}

/// A connection's slot.
pub struct Watched {
    table: Rc<RefCell<Table>>,
    slot: usize,
}

impl Watched {
    /// From now on a stoppable operation also ends (with [`Fired::Moved`], within a tick)
    /// once `gone` returns true: a session whose partition this node no longer serves.
    pub fn end_when(&self, gone: Rc<dyn Fn() -> bool>) {
        self.table.borrow_mut().slots[self.slot].end_when = Some(gone);
    }

    /// `op`'s output, unless `limit` passes first (give or take [`TICK`]) or, when
    /// `stoppable`, the node stops first. A future that is ready at once is never stopped.
    pub async fn within<T>(
        &self,
        limit: Duration,
        stoppable: bool,
        op: impl Future<Output = T>,
    ) -> Result<T, Fired> {
        let _armed = Armed::new(self, limit, stoppable);
        futures_lite::future::or(async { Ok(op.await) }, async { Err(self.fired().await) }).await
    }

    /// Resolves when the armed operation must end.
    async fn fired(&self) -> Fired {
        std::future::poll_fn(|cx| {
            let mut t = self.table.borrow_mut();
            let stopping = t.stopping;
            let s = &mut t.slots[self.slot];
            if s.stoppable && stopping {
                return Poll::Ready(Fired::Stopping);
            }
            if s.stoppable && (s.moved || s.end_when.as_ref().is_some_and(|f| f())) {
                s.moved = true;
                return Poll::Ready(Fired::Moved);
            }
            if s.expired {
                return Poll::Ready(Fired::TimedOut);
            }
            match &s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => s.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

/// A slot armed for one operation, disarmed however the operation ends: also when the
/// caller drops it half-way (IDLE's wait loses to a mailbox change), or the tick and the
/// stop would wake it for nothing.
struct Armed<'a>(&'a Watched);

impl<'a> Armed<'a> {
    fn new(w: &'a Watched, limit: Duration, stoppable: bool) -> Self {
        let mut t = w.table.borrow_mut();
        let s = &mut t.slots[w.slot];
        s.deadline = Some(Instant::now() + limit);
        s.stoppable = stoppable;
        s.expired = false;
        drop(t);
        Armed(w)
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        let mut t = self.0.table.borrow_mut();
        let s = &mut t.slots[self.0.slot];
        s.deadline = None;
        s.expired = false;
        s.waker = None;
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let mut t = self.table.borrow_mut();
        t.slots[self.slot] = Slot::default();
        t.free.push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_executor<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::default()
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_ready_operation_passes_and_a_slow_one_times_out() {
        on_executor(|| async {
            let w = Watch::default();
            let (_tx, rx) = async_channel::bounded::<()>(1);
            glommio::spawn_local(w.clone().run(rx)).detach();
            let c = w.watch();
            assert_eq!(
                c.within(Duration::from_secs(5), true, async { 7 }).await,
                Ok(7)
            );
            let started = Instant::now();
            let r = c
                .within(
                    Duration::from_millis(200),
                    false,
                    std::future::pending::<()>(),
                )
                .await;
            assert_eq!(r, Err(Fired::TimedOut));
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(200) && took < TICK * 3,
                "{took:?}"
            );
            // The slot is reusable after a timeout.
            assert_eq!(
                c.within(Duration::from_secs(5), true, async { 8 }).await,
                Ok(8)
            );
        });
    }

    #[test]
    fn stopping_ends_stoppable_operations_only() {
        on_executor(|| async {
            let w = Watch::default();
            let (tx, rx) = async_channel::bounded::<()>(1);
            glommio::spawn_local(w.clone().run(rx)).detach();
            let reader = w.watch();
            let read = glommio::spawn_local(async move {
                reader
                    .within(Duration::from_secs(60), true, std::future::pending::<()>())
                    .await
            });
            glommio::timer::sleep(Duration::from_millis(50)).await;
            tx.close();
            assert_eq!(read.await, Err(Fired::Stopping));
            // A write (not stoppable) after the stop still runs, and still has a deadline.
            let writer = w.watch();
            assert_eq!(
                writer
                    .within(Duration::from_secs(60), false, async { 1 })
                    .await,
                Ok(1)
            );
            let r = writer
                .within(
                    Duration::from_millis(100),
                    false,
                    std::future::pending::<()>(),
                )
                .await;
            assert_eq!(r, Err(Fired::TimedOut));
        });
    }

    #[test]
    fn an_operation_dropped_half_way_leaves_its_slot_disarmed() {
        on_executor(|| async {
            let w = Watch::default();
            let c = w.watch();
            {
                let op = c.within(Duration::from_secs(60), true, std::future::pending::<()>());
                let op = std::pin::pin!(op);
                assert!(futures_lite::future::poll_once(op).await.is_none());
                let t = w.0.borrow();
                assert!(t.slots[c.slot].deadline.is_some() && t.slots[c.slot].waker.is_some());
            }
            let t = w.0.borrow();
            let s = &t.slots[c.slot];
            assert!(s.deadline.is_none() && s.waker.is_none() && !s.expired);
        });
    }

    #[test]
    fn slots_are_given_back() {
        on_executor(|| async {
            let w = Watch::default();
            let a = w.watch();
            let b = w.watch();
            assert_eq!(w.slots_in_use(), 2);
            drop(a);
            let c = w.watch();
            assert_eq!(c.slot, 0);
            drop((b, c));
            assert_eq!(w.slots_in_use(), 0);
        });
    }
}
