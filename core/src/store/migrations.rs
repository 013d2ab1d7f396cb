//! Schema migrations: an ordered list of SQL scripts per backend, each applied once inside a
//! transaction and recorded with a checksum, so an edited, already-applied script is noticed.

use sha2::{Digest, Sha256};

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// Compares what the database has applied with what this binary ships. Returns the steps
/// still to apply, or an error if an applied step was changed or is unknown to this binary.
pub(crate) fn pending(
    shipped: &'static [Migration],
    applied: &[(i64, String)],
) -> Result<Vec<Migration>, String> {
    for (version, checksum) in applied {
        match shipped.iter().find(|m| m.version == *version) {
            None => {
                return Err(format!(
                    "the database has migration {version}, which this binary does not know: it was written by a newer version"
                ));
            }
            Some(m) if &m.checksum() != checksum => {
                return Err(format!(
                    "migration {version} ({}) differs from the one applied to this database",
                    m.description
                ));
            }
            Some(_) => {}
        }
    }
    Ok(shipped
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .copied()
        .collect())
}
