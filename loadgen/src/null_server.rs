//! A null SMTP/LMTP server: it accepts every message and stores nothing, at minimal cost.
//! Running the load generator against it measures the generator's own cost per request.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

/// Serves connections until the listener fails (run it on a thread of its own).
pub fn serve(listener: TcpListener, lmtp: bool) {
    for s in listener.incoming() {
        let Ok(s) = s else { continue };
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            let Ok(mut w) = s.try_clone() else { return };
            let mut r = BufReader::new(s);
            if w.write_all(b"220 null\r\n").is_err() {
                return;
            }
            let mut rcpts = 0;
            let mut in_data = false;
            let mut line = Vec::new();
            let mut out = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let reply: &[u8] = if in_data {
                    if line != b".\r\n" {
                        continue;
                    }
                    in_data = false;
                    let n = if lmtp { rcpts } else { 1 };
                    rcpts = 0;
                    for _ in 1..n.max(1) {
                        out.extend_from_slice(b"250 ok\r\n");
                    }
                    b"250 ok\r\n"
                } else if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"DATA") {
                    in_data = true;
                    b"354 go\r\n"
                } else if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"RCPT") {
                    rcpts += 1;
                    b"250 ok\r\n"
                } else if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"QUIT") {
                    let _ = w.write_all(b"221 bye\r\n");
                    return;
                } else {
                    b"250 ok\r\n"
                };
                out.extend_from_slice(reply);
                // Pipelined commands get their replies in one write, as real servers do.
                if r.buffer().is_empty() {
                    if w.write_all(&out).is_err() {
                        return;
                    }
                    out.clear();
                }
            }
        });
    }
}
