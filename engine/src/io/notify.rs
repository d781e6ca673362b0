//! A single-threaded wake-up flag for one waiting task (the group-commit flusher).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner {
    notified: bool,
    waker: Option<Waker>,
}

#[derive(Clone, Default)]
pub struct Notify(Rc<RefCell<Inner>>);

impl Notify {
    pub fn notify(&self) {
        let mut i = self.0.borrow_mut();
        i.notified = true;
        if let Some(w) = i.waker.take() {
            w.wake();
        }
    }

    /// Resolves once `notify` was called since the last `wait` resolved.
    pub fn wait(&self) -> Wait<'_> {
        Wait(self)
    }
}

pub struct Wait<'a>(&'a Notify);

impl Future for Wait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut i = self.0 .0.borrow_mut();
        if i.notified {
            i.notified = false;
            Poll::Ready(())
        } else {
            i.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}
