//! The open-file limit: every bus connection is a socket, and the embedded broker holds
//! three descriptors per bus (the TLS side, its link to rumqttd, rumqttd's side). The usual
//! soft limit of 1024 caps a broker at about 300 buses, and `accept` then fails with
//! `EMFILE`. The soft limit is only a default: any process may raise it up to the hard
//! limit, which is what a server that expects a fleet should do at start. Child processes
//! (e.g. a Mosquitto started from a test harness) inherit the raised limit.

/// The soft and hard `RLIMIT_NOFILE` before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    pub before: u64,
    pub after: u64,
    pub hard: Option<u64>,
}

/// When the hard limit is "unlimited", the kernel still refuses more than
/// `fs.nr_open` (1 048 576 by default); this is asked for instead.
#[cfg(unix)]
const UNLIMITED_TARGET: u64 = 1 << 20;

/// Raises the soft open-file limit to the hard limit. Never lowers it; a refusal leaves
/// the limit as it was and is returned as the error.
#[cfg(unix)]
pub fn raise_nofile() -> std::io::Result<NofileLimit> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let before = now.current.unwrap_or(u64::MAX);
    let target = now.maximum.unwrap_or(UNLIMITED_TARGET);
    if target <= before {
        return Ok(NofileLimit {
            before,
            after: before,
            hard: now.maximum,
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: now.maximum,
        },
    )?;
    let after = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    Ok(NofileLimit {
        before,
        after,
        hard: now.maximum,
    })
}

/// Elsewhere there is no such limit to raise.
#[cfg(not(unix))]
pub fn raise_nofile() -> std::io::Result<NofileLimit> {
    Ok(NofileLimit {
        before: u64::MAX,
        after: u64::MAX,
        hard: None,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn raises_to_the_hard_limit_and_is_idempotent() {
        let first = raise_nofile().unwrap();
        assert!(first.after >= first.before);
        if let Some(hard) = first.hard {
            assert_eq!(first.after, hard);
        }
        let again = raise_nofile().unwrap();
        assert_eq!(again.before, first.after);
        assert_eq!(again.after, first.after);
    }
}
