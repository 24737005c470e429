//! For tests that run HQ's store on PostgreSQL as well as SQLite: a fresh database per
//! test on the server `KELILING_TEST_PG_URL` names (an account that may create
//! databases, e.g. `postgres://keliling@127.0.0.1:55432/postgres`, as `.ci/run` starts
//! one).
//!
//! Unset, the PostgreSQL variants of tests are skipped with a line on stderr, except
//! under `CI=true`, where they fail: CI must not go green by testing SQLite alone.

use crate::db::{Db, DbError};
use crate::store::StoreLocation;

pub const PG_URL_ENV: &str = "KELILING_TEST_PG_URL";

/// The server for PostgreSQL tests, or `None` (skip). Panics under `CI=true` when unset:
/// for tests only.
pub fn pg_admin_url(test: &str) -> Option<String> {
    match std::env::var(PG_URL_ENV) {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "{test}: {PG_URL_ENV} is unset under CI=true: the PostgreSQL tests must run in CI"
            );
            eprintln!("{test}: skipped on PostgreSQL ({PG_URL_ENV} unset)");
            None
        }
    }
}

pub const PG_CA_ENV: &str = "KELILING_TEST_PG_CA";

/// The CA of the test server's TLS certificate (`.ci/postgres` makes one), or `None`
/// (skip). Panics under `CI=true` when unset: for tests only.
pub fn pg_test_ca(test: &str) -> Option<std::path::PathBuf> {
    match std::env::var(PG_CA_ENV) {
        Ok(p) if !p.trim().is_empty() => Some(p.trim().into()),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "{test}: {PG_CA_ENV} is unset under CI=true: TLS to PostgreSQL must be tested in CI"
            );
            eprintln!("{test}: skipped ({PG_CA_ENV} unset)");
            None
        }
    }
}

/// Creates an empty C-collated database for one test and returns where it is. Databases
/// are not dropped (that waits for a checkpoint, about a second each): the test server
/// is thrown away after the run.
pub fn fresh_pg_database(admin_url: &str, tag: &str) -> Result<StoreLocation, DbError> {
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let name = format!("t_{tag}_{:08x}", rand::random::<u32>());
    let admin = Db::connect_postgres(admin_url, None, "keliling-tests")?;
    admin.execute_batch(&format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    ))?;
    Ok(StoreLocation::Postgres {
        url: with_database(admin_url, &name),
        password: None,
    })
}

/// One test's store: an SQLite file in a temporary directory, or a fresh PostgreSQL
/// database.
pub struct TestStore {
    pub backend: crate::db::Backend,
    pub at: StoreLocation,
    _dir: tempfile::TempDir,
}

impl TestStore {
    pub fn open(&self) -> crate::store::HqStore {
        match crate::store::HqStore::connect(&self.at, "test") {
            Ok(s) => s,
            Err(e) => panic!("opening {}: {e}", self.at),
        }
    }
}

/// A fresh store on each backend there is: SQLite always, PostgreSQL when
/// `KELILING_TEST_PG_URL` is set (and it must be under `CI=true`). For tests only: panics
/// on failure.
pub fn each_backend(test: &str) -> Vec<TestStore> {
    let dir = || match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("a temporary directory: {e}"),
    };
    let sqlite_dir = dir();
    let mut out = vec![TestStore {
        backend: crate::db::Backend::Sqlite,
        at: StoreLocation::Sqlite(sqlite_dir.path().join("hq.sqlite")),
        _dir: sqlite_dir,
    }];
    if let Some(admin) = pg_admin_url(test) {
        match fresh_pg_database(&admin, test) {
            Ok(at) => out.push(TestStore {
                backend: crate::db::Backend::Postgres,
                at,
                _dir: dir(),
            }),
            Err(e) => panic!("{test}: a PostgreSQL database on {admin}: {e}"),
        }
    }
    out
}

/// The same URL naming another database.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{db}{query}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_names_another_database() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://k@127.0.0.1:55432/postgres", "t_a"),
            "postgres://k@127.0.0.1:55432/t_a"
        );
        assert_eq!(
            with_database("postgres://k@h/postgres?sslmode=disable", "t_a"),
            "postgres://k@h/t_a?sslmode=disable"
        );
        assert_eq!(with_database("postgres://k@h", "t_a"), "postgres://k@h/t_a");
    }
}
