//! The process's open-files limit (`RLIMIT_NOFILE`) and the connection cap derived from it.

/// Descriptors kept out of the derived connection cap for the process's own use: the
/// listener, logs and files, Redis connections, child processes' pipes.
pub const FD_RESERVE: u64 = 128;

/// The derived connection cap never exceeds this: each connection may buffer up to
/// `max_header_bytes` of an unfinished head, so the cap also bounds that memory (16 384 × 64 KiB
/// = 1 GiB at worst).
pub const MAX_DERIVED_CONNECTIONS: usize = 16_384;

/// The derived connection cap is never below this, however low the limit.
const MIN_DERIVED_CONNECTIONS: usize = 16;

/// Raises the soft open-files limit to the hard one; returns the soft limit in force after it
/// (`None`: unlimited or unknown).
#[cfg(unix)]
pub fn raise_to_hard() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
        if current < maximum {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::debug!(from = current, to = maximum, "raised the open-files limit");
                }
                Err(error) => {
                    tracing::warn!(%error, soft = current, hard = maximum, "cannot raise the open-files limit; keeping the soft one");
                }
            }
        }
    }
    soft()
}

/// Without `setrlimit`: the limit is left as it is.
#[cfg(not(unix))]
pub fn raise_to_hard() -> Option<u64> {
    soft()
}

/// The soft open-files limit in force (`None`: unlimited or unknown).
#[cfg(unix)]
pub fn soft() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Without `getrlimit`: unknown.
#[cfg(not(unix))]
pub fn soft() -> Option<u64> {
    None
}

/// The connection cap for a soft open-files limit of `soft`: the limit minus [`FD_RESERVE`],
/// between 16 and [`MAX_DERIVED_CONNECTIONS`].
pub fn derived_max_connections(soft: Option<u64>) -> usize {
    let Some(soft) = soft else {
        return MAX_DERIVED_CONNECTIONS;
    };
    let usable = usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    usable.clamp(MIN_DERIVED_CONNECTIONS, MAX_DERIVED_CONNECTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_a_reserve_and_stays_within_bounds() {
        assert_eq!(derived_max_connections(Some(1024)), 896);
        assert_eq!(derived_max_connections(Some(100)), 16);
        assert_eq!(
            derived_max_connections(Some(1 << 20)),
            MAX_DERIVED_CONNECTIONS
        );
        assert_eq!(derived_max_connections(None), MAX_DERIVED_CONNECTIONS);
    }

    #[cfg(unix)]
    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        let after = raise_to_hard();
        assert_eq!(after, soft());
        if let (Some(after), Some(hard)) = (after, hard) {
            assert_eq!(after, hard);
        }
    }
}
