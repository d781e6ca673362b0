//! IDLE (RFC 2177): waiting on the link for DONE or on the store for a change.

use super::*;

impl<S: MailStore, L: Link> Session<S, L> {
    pub(super) async fn idle(&mut self, tag: &str) -> Res {
        self.line("+ idling");
        // Taken before each sync and nowhere else: a commit made while we sync or write
        // wakes the next wait.
        let mut seen = self.store.change_generation();
        self.sync(true).await;
        if !self.flush().await {
            self.closing = true;
            return Ok(());
        }
        loop {
            // Input first: DONE (or anything else) ends the IDLE.
            let woke = match self.link.next_frame() {
                Some(f) => Woke::Input(f),
                None => self.link.wait(self.store.changed_after(seen)).await,
            };
            match woke {
                Woke::Input(Frame::Command(b)) if b.trim_ascii().eq_ignore_ascii_case(b"DONE") => {
                    return self.ok(tag, "IDLE terminated").await;
                }
                Woke::Input(_) => {
                    self.failed(tag, &Failure::bad("expected DONE"));
                    return Ok(());
                }
                Woke::Changed => {
                    seen = self.store.change_generation();
                    self.sync(true).await
                }
                Woke::TimedOut => {
                    self.line("* BYE autologout: idle too long");
                    self.closing = true;
                    return Ok(());
                }
                Woke::Stopping => {
                    self.line("* BYE [UNAVAILABLE] server shutting down");
                    self.closing = true;
                    return Ok(());
                }
                Woke::Moved => {
                    self.line(super::store::MOVED_BYE);
                    self.closing = true;
                    return Ok(());
                }
                Woke::Closed => {
                    self.closing = true;
                    return Ok(());
                }
            }
            if !self.flush().await {
                self.closing = true;
                return Ok(());
            }
        }
    }
}
