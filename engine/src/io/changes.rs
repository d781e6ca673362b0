//! Wakes every task waiting for the partition to change (IMAP IDLE, NOOP-less updates).
//!
//! A generation counter, bumped after each durable commit, and the wakers of the waiters.
//! A waiter remembers the generation it saw; it is ready once the counter moved, so a
//! change between two waits is never missed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Changes {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Changes {
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    pub fn changed(&self) {
        self.generation.set(self.generation.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once a change happened after generation `seen`.
    pub fn after(&self, seen: u64) -> After<'_> {
        After { c: self, seen }
    }
}

pub struct After<'a> {
    c: &'a Changes,
    seen: u64,
}

impl Future for After<'_> {
    type Output = u64;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let g = self.c.generation.get();
        if g != self.seen {
            return Poll::Ready(g);
        }
        let mut w = self.c.waiters.borrow_mut();
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_between_waits_is_not_missed() {
        let c = Changes::default();
        let g = c.generation();
        c.changed();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut f = std::pin::pin!(c.after(g));
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(1));
        let mut f2 = std::pin::pin!(c.after(1));
        assert_eq!(f2.as_mut().poll(&mut cx), Poll::Pending);
        c.changed();
        assert_eq!(f2.as_mut().poll(&mut cx), Poll::Ready(2));
    }
}
