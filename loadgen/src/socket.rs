//! A client's TCP socket with read and write timeouts, for both runtimes: on a
//! [`crate::percore`] coroutine it is non-blocking and waits for readiness by suspending the
//! coroutine; on a thread of its own it blocks with the socket's own timeouts (`SO_RCVTIMEO`,
//! `SO_SNDTIMEO`). Either way a timeout is reported as [`std::io::ErrorKind::TimedOut`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::percore::{self, Wait, Woken};

pub struct Socket {
    tcp: TcpStream,
    /// Non-blocking, driven by the coroutine runtime.
    on_coroutine: bool,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl Socket {
    /// Connects within `timeout`, which then also bounds every read and write.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Socket> {
        if !percore::in_coroutine() {
            let tcp = TcpStream::connect_timeout(&addr, timeout)?;
            tcp.set_read_timeout(Some(timeout))?;
            tcp.set_write_timeout(Some(timeout))?;
            tcp.set_nodelay(true)?;
            return Ok(Socket {
                tcp,
                on_coroutine: false,
                read_timeout: timeout,
                write_timeout: timeout,
            });
        }
        let m = mio::net::TcpStream::connect(addr)?;
        let tcp: TcpStream = m.into();
        percore::register(tcp.as_raw_fd())?;
        let s = Socket {
            tcp,
            on_coroutine: true,
            read_timeout: timeout,
            write_timeout: timeout,
        };
        // The connect is under way; it is done (or failed) when the socket turns writable.
        // A wake-up may be spurious (readiness is tracked per connection, not per socket),
        // so "not connected yet" means wait again.
        let deadline = Instant::now() + timeout;
        loop {
            s.wait(true, deadline)?;
            if let Some(e) = s.tcp.take_error()? {
                return Err(e);
            }
            match s.tcp.peer_addr() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => return Err(e),
            }
        }
        s.tcp.set_nodelay(true)?;
        Ok(s)
    }

    /// A second handle on the same connection (for a TLS upgrade).
    pub fn try_clone(&self) -> io::Result<Socket> {
        Ok(Socket {
            tcp: self.tcp.try_clone()?,
            on_coroutine: self.on_coroutine,
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
        })
    }

    pub fn set_read_timeout(&mut self, d: Duration) {
        let d = d.max(Duration::from_millis(1));
        self.read_timeout = d;
        if !self.on_coroutine {
            let _ = self.tcp.set_read_timeout(Some(d));
        }
    }

    fn wait(&self, write: bool, deadline: Instant) -> io::Result<()> {
        let w = Wait::Io { write, deadline };
        match percore::wait(w) {
            Woken::Ready => Ok(()),
            Woken::TimedOut => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

impl Socket {
    /// Runs `op` until it does not find the socket unready; on a coroutine, waiting for
    /// readiness (writable with `write`) in between, within the timeout.
    fn retry<T>(
        &mut self,
        write: bool,
        mut op: impl FnMut(&mut TcpStream) -> io::Result<T>,
    ) -> io::Result<T> {
        if !self.on_coroutine {
            return op(&mut self.tcp);
        }
        let t = if write {
            self.write_timeout
        } else {
            self.read_timeout
        };
        let deadline = Instant::now() + t;
        loop {
            match op(&mut self.tcp) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(write, deadline)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.retry(false, |t| t.read(buf))
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.retry(true, |t| t.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
