//! Store URLs: `sqlite://PATH` (optionally `?synchronous=full`) for the embedded store,
//! `postgres://...` for PostgreSQL; [`open_store`] opens either behind the trait.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::postgres::PostgresEventStore;
use crate::store::sqlite::{Durability, SqliteEventStore, SqliteOptions};
use crate::store::{SharedStore, StoreError};

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite {
        path: PathBuf,
        durability: Durability,
    },
    Postgres {
        url: String,
    },
}

impl StoreUrl {
    /// The embedded default inside a data directory: `<dir>/events.db`.
    pub fn default_in(data_dir: &Path) -> Self {
        StoreUrl::Sqlite {
            path: data_dir.join("events.db"),
            durability: Durability::Normal,
        }
    }

    /// What the binaries' `--store` / `--data-dir` options name: the URL when given, else the
    /// embedded default in the data directory.
    pub fn resolve(store: Option<&str>, data_dir: &Path) -> Result<Self, StoreError> {
        match store {
            Some(url) => Self::parse(url),
            None => Ok(Self::default_in(data_dir)),
        }
    }

    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres {
                url: url.to_owned(),
            });
        }
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                StoreError::Config(format!(
                    "store URL {url:?} must start with sqlite:// or postgres://"
                ))
            })?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(StoreError::Config(format!(
                "store URL {url:?} has no file path"
            )));
        }
        let mut durability = Durability::Normal;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("synchronous", value)) => durability = value.parse()?,
                _ => {
                    return Err(StoreError::Config(format!(
                        "unknown SQLite store option {pair:?} (known: synchronous=normal|full|extra)"
                    )));
                }
            }
        }
        Ok(StoreUrl::Sqlite {
            path: PathBuf::from(path),
            durability,
        })
    }

    /// A display form that never shows a password.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            StoreUrl::Postgres { url } => match (url.find("://"), url.rfind('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
                }
                _ => url.clone(),
            },
        }
    }
}

/// Opens the store a URL names, creating and migrating it as needed.
pub async fn open_store(url: &StoreUrl) -> Result<SharedStore, StoreError> {
    Ok(match url {
        StoreUrl::Sqlite { path, durability } => {
            let mut options = SqliteOptions::new(path);
            options.durability = *durability;
            Arc::new(SqliteEventStore::open_with(options).await?)
        }
        StoreUrl::Postgres { url } => Arc::new(PostgresEventStore::connect(url).await?),
    })
}

/// Opens an existing store for reading only (the tools that only read: verify, stats,
/// timeline, export): nothing is created or migrated, appends fail, and a missing, empty or
/// foreign file or database is [`StoreError::NotAStore`].
pub async fn open_store_read_only(url: &StoreUrl) -> Result<SharedStore, StoreError> {
    Ok(match url {
        StoreUrl::Sqlite { path, durability } => {
            let mut options = SqliteOptions::new(path);
            options.durability = *durability;
            options.read_only = true;
            Arc::new(SqliteEventStore::open_with(options).await?)
        }
        StoreUrl::Postgres { url } => Arc::new(PostgresEventStore::connect_read_only(url).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_file_and_optional_durability() {
        assert_eq!(
            StoreUrl::parse("sqlite://./crm-data/events.db").expect("valid"),
            StoreUrl::Sqlite {
                path: PathBuf::from("./crm-data/events.db"),
                durability: Durability::Normal
            }
        );
        assert_eq!(
            StoreUrl::parse("sqlite:/tmp/x.db?synchronous=full").expect("valid"),
            StoreUrl::Sqlite {
                path: PathBuf::from("/tmp/x.db"),
                durability: Durability::Full
            }
        );
    }

    #[test]
    fn bad_urls_and_non_durable_settings_are_refused_with_a_reason() {
        for bad in [
            "mysql://x",
            "sqlite://",
            "sqlite://x.db?synchronous=off",
            "sqlite://x.db?cache=1",
        ] {
            let error = StoreUrl::parse(bad).expect_err(bad).to_string();
            assert!(error.contains("invalid store configuration"), "{error}");
        }
    }

    #[test]
    fn postgres_urls_are_shown_without_credentials() {
        let url = StoreUrl::parse("postgres://crm:secret@db:5432/crm").expect("valid");
        assert_eq!(url.redacted(), "postgres://***@db:5432/crm");
    }
}
