//! Reading a whole mailbox over POP3 (LIST, RETR each, QUIT without DELE).

use std::net::SocketAddr;
use std::time::Duration;

use crate::client::{ClientError, Conn};
use crate::tls::Tls;

pub(super) fn read_all(
    pop3: SocketAddr,
    tls: Option<&Tls>,
    user: &str,
    password: &str,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, ClientError> {
    let mut c = Conn::connect_tls(pop3, timeout, tls)?;
    c.pop3_login(user, password)?;
    let list = c.pop3_list()?;
    let mut out = Vec::with_capacity(list.len());
    for (n, _) in list {
        out.push(c.pop3_retr(n)?);
    }
    c.quit();
    Ok(out)
}
