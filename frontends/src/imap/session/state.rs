//! The protocol's states (RFC 9051 section 3) and which commands each admits: one table,
//! consulted before any command runs, instead of an order of match arms.

use crate::imap::reply::Failure;
use crate::imap::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    NotAuthenticated,
    Authenticated,
    Selected,
}

/// Where a command may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    /// Any state.
    Any,
    /// Before login only (STARTTLS, LOGIN, AUTHENTICATE).
    Login,
    /// After login.
    Account,
    /// With a mailbox selected.
    Mailbox,
    /// Nowhere: an extension this server does not have.
    Nothing,
}

fn needs(cmd: &Command) -> Needs {
    use Command as C;
    match cmd {
        C::Capability | C::Noop | C::Logout | C::Id(_) => Needs::Any,
        C::StartTls | C::Login { .. } | C::Authenticate { .. } => Needs::Login,
        C::Close
        | C::Unselect
        | C::Expunge { .. }
        | C::Fetch { .. }
        | C::Store { .. }
        | C::Copy { .. }
        | C::Move { .. }
        | C::Search { .. }
        | C::Sort { .. }
        | C::Thread { .. }
        | C::CancelUpdate(_) => Needs::Mailbox,
        C::Unsupported(_) => Needs::Nothing,
        C::Check
        | C::Enable(_)
        | C::Select { .. }
        | C::Create { .. }
        | C::Delete(_)
        | C::Rename { .. }
        | C::Subscribe(_)
        | C::Unsubscribe(_)
        | C::List { .. }
        | C::Namespace
        | C::Status { .. }
        | C::Append { .. }
        | C::Idle
        | C::GetQuota(_)
        | C::GetQuotaRoot(_)
        | C::GetMetadata(_)
        | C::SetMetadata(_)
        | C::Notify(_)
        | C::GenUrlAuth(_)
        | C::ResetKey(..)
        | C::UrlFetch(_)
        | C::Compress(_) => Needs::Account,
    }
}

/// Whether `cmd` may run in `state`; the `BAD` to answer if not.
pub fn check(cmd: &Command, state: State) -> Result<(), Failure> {
    let needs = needs(cmd);
    match (state, needs) {
        (_, Needs::Any)
        | (State::NotAuthenticated, Needs::Login)
        | (State::Authenticated | State::Selected, Needs::Account)
        | (State::Selected, Needs::Mailbox) => Ok(()),
        (_, Needs::Nothing) => match cmd {
            Command::Unsupported(v) if state != State::NotAuthenticated => {
                Err(Failure::bad(format!("{v} is not supported")))
            }
            _ => Err(Failure::bad("not valid in this state")),
        },
        (State::NotAuthenticated, Needs::Account) => Err(Failure::bad("log in first")),
        (State::NotAuthenticated, Needs::Mailbox) => Err(Failure::bad("not valid in this state")),
        (State::Authenticated | State::Selected, Needs::Login) => {
            Err(Failure::bad("already authenticated"))
        }
        (State::Authenticated, Needs::Mailbox) => Err(Failure::bad("no mailbox selected")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::parse_command;

    fn cmd(line: &str) -> Command {
        parse_command(format!("t {line}\r\n").as_bytes()).unwrap().1
    }

    #[test]
    fn each_state_admits_its_commands() {
        use State::*;
        let table = [
            ("CAPABILITY", [true, true, true]),
            ("LOGIN a b", [true, false, false]),
            ("SELECT INBOX", [false, true, true]),
            ("CREATE x", [false, true, true]),
            ("FETCH 1 FLAGS", [false, false, true]),
            ("UNSELECT", [false, false, true]),
            ("CANCELUPDATE \"t\"", [false, false, true]),
            ("SETQUOTA \"\" (STORAGE 1)", [false, false, false]),
        ];
        for (line, admitted) in table {
            for (state, ok) in [NotAuthenticated, Authenticated, Selected]
                .into_iter()
                .zip(admitted)
            {
                assert_eq!(check(&cmd(line), state).is_ok(), ok, "{line} in {state:?}");
            }
        }
        assert_eq!(
            check(&cmd("FETCH 1 FLAGS"), Authenticated)
                .unwrap_err()
                .to_string(),
            "BAD no mailbox selected"
        );
        assert_eq!(
            check(&cmd("LIST \"\" *"), NotAuthenticated)
                .unwrap_err()
                .to_string(),
            "BAD log in first"
        );
        assert_eq!(
            check(&cmd("LOGIN a b"), Selected).unwrap_err().to_string(),
            "BAD already authenticated"
        );
    }
}
