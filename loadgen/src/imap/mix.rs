//! The IMAP command mix: which commands a logged-in session sends, with a weight each.
//!
//! `fetch-flags:30,fetch-body:30,search-unseen:10,search-subject:10,store:10,noop:10` (the
//! default, read-mostly and unchanged so runs stay comparable), or `extended`, which adds
//! the commands that change the mailbox and IDLE at small weights.

use rand::Rng;

/// One kind of request a selected session makes; each targets a random message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `UID FETCH u (FLAGS)`
    FetchFlags,
    /// `UID FETCH u (RFC822.SIZE BODY.PEEK[])`, the body checked against the size (and
    /// against its checksum header when it carries one).
    FetchBody,
    /// `UID SEARCH UNSEEN`
    SearchUnseen,
    /// `UID SEARCH SUBJECT word`
    SearchSubject,
    /// `UID STORE u +FLAGS (\Flagged)` or `-FLAGS`, `\Flagged` or `\Seen`, at random.
    Store,
    Noop,
    /// `APPEND INBOX {n}` of a generated, stamped message; with UIDPLUS, APPENDUID must
    /// name the new UID.
    Append,
    /// `UID STORE u +FLAGS (\Deleted)`, then `UID EXPUNGE u` (UIDPLUS) or `EXPUNGE`, on one
    /// of the session's own APPENDs if any; the message must be gone. Never below
    /// `--prefill` messages (then only `expunge-held`: see the workload).
    Expunge,
    /// `IDLE` until an EXISTS or `--idle-ms`, then `DONE`; the latency is the round trip
    /// without the wait.
    Idle,
}

impl Command {
    pub const ALL: [Command; 9] = [
        Command::FetchFlags,
        Command::FetchBody,
        Command::SearchUnseen,
        Command::SearchSubject,
        Command::Store,
        Command::Noop,
        Command::Append,
        Command::Expunge,
        Command::Idle,
    ];

    /// The name in `--imap-mix` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Command::FetchFlags => "fetch-flags",
            Command::FetchBody => "fetch-body",
            Command::SearchUnseen => "search-unseen",
            Command::SearchSubject => "search-subject",
            Command::Store => "store",
            Command::Noop => "noop",
            Command::Append => "append",
            Command::Expunge => "expunge",
            Command::Idle => "idle",
        }
    }

    /// Whether it names a message (and so needs a non-empty mailbox).
    pub fn needs_message(self) -> bool {
        matches!(
            self,
            Command::FetchFlags | Command::FetchBody | Command::Store | Command::Expunge
        )
    }
}

/// Weighted commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Command, u32)>,
    total: u32,
}

pub const DEFAULT_MIX: &str =
    "fetch-flags:30,fetch-body:30,search-unseen:10,search-subject:10,store:10,noop:10";

/// `--imap-mix extended`: the default plus APPEND and EXPUNGE (equal weights, so mailboxes
/// stay about their size) and a little IDLE.
pub const EXTENDED_MIX: &str = "fetch-flags:30,fetch-body:30,search-unseen:10,search-subject:10,store:10,noop:10,append:5,expunge:5,idle:1";

impl Default for Mix {
    fn default() -> Self {
        Mix::parse(DEFAULT_MIX).expect("the default mix parses")
    }
}

impl Mix {
    /// `name:weight,…`; a name without a weight counts 1. `default` and `extended` name
    /// [`DEFAULT_MIX`] and [`EXTENDED_MIX`].
    pub fn parse(s: &str) -> Result<Mix, String> {
        let s = match s.trim() {
            "default" => DEFAULT_MIX,
            "extended" => EXTENDED_MIX,
            s => s,
        };
        let mut weights: Vec<(Command, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = match part.split_once(':') {
                Some((n, w)) => (
                    n.trim(),
                    w.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("{part:?}: the weight is not a whole number"))?,
                ),
                None => (part, 1),
            };
            let c = Command::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = Command::ALL.iter().map(|c| c.name()).collect();
                    format!("unknown command {name:?} (one of {})", names.join(", "))
                })?;
            if weights.iter().any(|(x, _)| *x == c) {
                return Err(format!("{name} is given twice"));
            }
            weights.push((c, w));
        }
        let total = weights
            .iter()
            .try_fold(0u32, |t, (_, w)| t.checked_add(*w))
            .ok_or("the weights are too large")?;
        if total == 0 {
            return Err("the mix has no command with a weight above 0".into());
        }
        weights.retain(|(_, w)| *w > 0);
        Ok(Mix { weights, total })
    }

    pub fn pick(&self, rng: &mut impl Rng) -> Command {
        let mut x = rng.gen_range(0..self.total);
        for &(c, w) in &self.weights {
            if x < w {
                return c;
            }
            x -= w;
        }
        unreachable!("x < total")
    }

    pub fn commands(&self) -> impl Iterator<Item = Command> + '_ {
        self.weights.iter().map(|(c, _)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn parse_and_pick_by_weight() {
        let m = Mix::parse("fetch-body:3, noop:1,store:0").unwrap();
        assert_eq!(
            m.commands().collect::<Vec<_>>(),
            [Command::FetchBody, Command::Noop]
        );
        let mut rng = SmallRng::seed_from_u64(1);
        let n = 40_000;
        let bodies = (0..n)
            .filter(|_| m.pick(&mut rng) == Command::FetchBody)
            .count();
        assert!((29_000..31_000).contains(&bodies), "{bodies}");
        assert_eq!(Mix::parse("noop").unwrap().pick(&mut rng), Command::Noop);
        assert_eq!(Mix::default().commands().count(), 6);
        assert_eq!(Mix::parse("default").unwrap(), Mix::default());
        let ext = Mix::parse("extended").unwrap();
        assert_eq!(ext.commands().count(), 9);
        assert!(ext.commands().any(|c| c == Command::Idle));
        assert_eq!(
            Mix::parse("append:1,expunge:2,idle")
                .unwrap()
                .commands()
                .collect::<Vec<_>>(),
            [Command::Append, Command::Expunge, Command::Idle]
        );
    }

    #[test]
    fn bad_mixes() {
        assert!(Mix::parse("").is_err());
        assert!(Mix::parse("noop:0").is_err());
        assert!(Mix::parse("fetch:1").unwrap_err().contains("fetch-flags"));
        assert!(Mix::parse("noop:x").is_err());
        assert!(Mix::parse("noop:1,noop:2").is_err());
        assert!(Mix::parse("noop:4294967295,store:1").is_err());
    }
}
