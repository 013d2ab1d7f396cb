//! File descriptors: the connection limit is kept below the process's `RLIMIT_NOFILE`, with a
//! reserve for the database connections, the store's files and the listener, so the server
//! never runs out of descriptors (`accept: Too many open files`) however many clients connect.

/// Descriptors kept for everything but client connections.
pub const RESERVE: usize = 256;

/// The connection limit to apply, and the descriptor limit it was fitted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fitted {
    pub max_connections: usize,
    /// The soft `RLIMIT_NOFILE` after raising it (None where it could not be read).
    pub nofile: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` towards what `wanted` connections need (never above the hard
/// limit), then fits `wanted` under it.
pub fn fit(wanted: usize) -> Fitted {
    let need = u64::try_from(wanted.saturating_add(RESERVE)).unwrap_or(u64::MAX);
    let nofile = match rlimit::increase_nofile_limit(need) {
        Ok(soft) => Some(soft),
        Err(error) => {
            tracing::warn!(%error, "cannot raise RLIMIT_NOFILE; reading it as it is");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    };
    Fitted {
        max_connections: limit_under(wanted, nofile),
        nofile,
    }
}

/// `wanted`, or fewer so that connections leave [`RESERVE`] descriptors free (at least 1).
pub fn limit_under(wanted: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else {
        return wanted.max(1);
    };
    let available = usize::try_from(nofile)
        .unwrap_or(usize::MAX)
        .saturating_sub(RESERVE)
        .max(1);
    wanted.min(available).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_leaves_the_reserve_free() {
        assert_eq!(limit_under(4096, Some(1024)), 1024 - RESERVE);
        assert_eq!(limit_under(4096, Some(1_048_576)), 4096);
        assert_eq!(limit_under(4096, Some(10)), 1);
        assert_eq!(limit_under(4096, None), 4096);
        let fitted = fit(100);
        assert!(fitted.max_connections <= 100 && fitted.max_connections >= 1);
    }
}
