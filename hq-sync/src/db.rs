//! One SQL connection to HQ's store, on SQLite (a file, the zero-install default) or
//! PostgreSQL (a server, for several HQ machines): the store modules (`store.rs`,
//! `staff.rs`, `review.rs`, `decisions.rs`, `audit.rs`, `api_tokens.rs`,
//! `catalogues.rs`, `fleet.rs`) write their SQL once, in the dialect both accept, and run
//! it through [`Db`].
//!
//! Why a thin layer over two drivers rather than one trait with two implementations: the
//! completion logic, the decision outbox and the audit chain are the parts that must not
//! drift, and they exist once this way. What differs per backend is small and named here:
//! - placeholders: the SQL says `?1` (or `?`, numbered as SQLite numbers them); PostgreSQL
//!   gets `$1` ([`rewrite_placeholders`]);
//! - values: [`Value`] binds to either, so a `u32` never meets PostgreSQL's OID type and a
//!   bool column reads as `bool` from SQLite's integers and PostgreSQL's booleans;
//! - serialization of writers: SQLite's `BEGIN IMMEDIATE` runs write transactions one
//!   after another; PostgreSQL's READ COMMITTED does not, so a transaction takes the
//!   advisory locks of [`Db::lock_application_id`], [`Db::lock_blobs`] and
//!   [`Db::lock_audit`] (no-ops on SQLite), always in that order (the lock order in
//!   `store.rs`), and row locks through [`Db::for_update`];
//! - errors: [`DbError::is_unique_violation`], [`DbError::is_retryable`].
//!
//! Invariants: every PostgreSQL session runs with `synchronous_commit = on` and refuses a
//! server with `fsync = off` (HQ acks only what is durable); a statement outside a
//! transaction on a PostgreSQL connection that dropped reconnects first, one inside a
//! transaction fails (the transaction is gone, and the buses send again).
//!
//! The PostgreSQL client is synchronous (it runs a small runtime of its own); called from
//! a tokio worker thread it steps out of the runtime with `block_in_place`, so the store
//! works from blocking threads and from multi-thread runtimes alike. No `Db` may be used
//! on a current-thread runtime's own thread.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use postgres::types::{IsNull, ToSql as PgToSql, Type};
use rusqlite::types::{ToSqlOutput, ValueRef};

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(rusqlite::Error),
    #[error("{}", pg_message(.0))]
    Postgres(postgres::Error),
    #[error("query returned no rows")]
    NoRows,
    #[error("column {column}: {message}")]
    Type { column: usize, message: String },
    #[error("{0}")]
    Setup(String),
}

/// PostgreSQL's own message with its detail and SQLSTATE: the driver's `Display` says only
/// "db error".
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(": ");
                s.push_str(d);
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => DbError::NoRows,
            e => DbError::Sqlite(e),
        }
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        DbError::Postgres(e)
    }
}

impl DbError {
    /// A unique or primary key was already taken (SQLite's constraint error on a UNIQUE
    /// or PRIMARY KEY, PostgreSQL's 23505).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                f.code == rusqlite::ErrorCode::ConstraintViolation
                    && matches!(
                        f.extended_code,
                        rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    )
            }
            DbError::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }

    /// Worth running the whole transaction again: a serialization failure or a deadlock
    /// PostgreSQL broke (the lock order should make those never happen), or SQLite busy.
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                f.code == rusqlite::ErrorCode::DatabaseBusy
            }
            DbError::Postgres(e) => {
                use postgres::error::SqlState;
                matches!(
                    e.code(),
                    Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                        || *c == SqlState::T_R_DEADLOCK_DETECTED
                )
            }
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Values

/// A parameter, as either backend binds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(Cow<'a, str>),
    Blob(Cow<'a, [u8]>),
}

/// What can be bound as a parameter. There is deliberately no impl for `u64` or `usize`:
/// a call site says how it fits in SQL's signed 64 bits (`i64::try_from(..)`).
pub trait ToValue {
    fn to_value(&self) -> Value<'_>;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}
impl ToValue for i64 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(*self)
    }
}
impl ToValue for i32 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for u32 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Bool(*self)
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(Cow::Borrowed(self))
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(Cow::Borrowed(self))
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(Cow::Borrowed(self))
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(Cow::Borrowed(self))
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}
impl ToValue for Value<'_> {
    fn to_value(&self) -> Value<'_> {
        match self {
            Value::Null => Value::Null,
            Value::Int(i) => Value::Int(*i),
            Value::Real(f) => Value::Real(*f),
            Value::Bool(b) => Value::Bool(*b),
            Value::Text(t) => Value::Text(Cow::Borrowed(t)),
            Value::Blob(b) => Value::Blob(Cow::Borrowed(b)),
        }
    }
}

/// Parameters for [`Db::execute`] and friends: `vals![bus.as_str(), id, n]` (each taken
/// by reference, as `rusqlite::params!` does).
#[macro_export]
macro_rules! vals {
    () => { &[][..] as &[$crate::db::Value<'_>] };
    ($($v:expr),+ $(,)?) => { &[$($crate::db::ToValue::to_value(&$v)),+][..] };
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl PgToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Bool(b), &Type::BOOL) => b.to_sql(ty, out),
            (Value::Bool(b), &Type::INT8) => i64::from(*b).to_sql(ty, out),
            (Value::Bool(b), &Type::INT4) => i32::from(*b).to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Text(t), &Type::TEXT | &Type::VARCHAR | &Type::NAME | &Type::BPCHAR) => {
                t.as_ref().to_sql(ty, out)
            }
            (Value::Blob(b), &Type::BYTEA) => b.as_ref().to_sql(ty, out),
            (v, ty) => Err(format!("cannot bind {v:?} to a PostgreSQL {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

// ---------------------------------------------------------------------------------------
// Rows

/// One result row: columns by index, converted to the type asked for.
pub struct Row<'a>(RowInner<'a>);

enum RowInner<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a postgres::Row),
}

/// Only `usize` indexes: `r.get::<_, String>(0)` reads as it does with rusqlite.
pub trait RowIndex {
    fn index(self) -> usize;
}
impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

impl Row<'_> {
    pub fn get<I: RowIndex, T: FromSql>(&self, i: I) -> Result<T, DbError> {
        let column = i.index();
        let v = match &self.0 {
            RowInner::Sqlite(r) => T::from_sqlite(r.get_ref(column)?),
            RowInner::Postgres(r) => T::from_pg(r, column),
        };
        v.map_err(|message| DbError::Type { column, message })
    }
}

/// A column type either backend can produce.
pub trait FromSql: Sized {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String>;
    fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, String>;
}

fn pg_type(r: &postgres::Row, i: usize) -> Result<&Type, String> {
    r.columns()
        .get(i)
        .map(|c| c.type_())
        .ok_or_else(|| format!("no column {i}"))
}

fn pg_opt<'r, T: postgres::types::FromSql<'r>>(
    r: &'r postgres::Row,
    i: usize,
) -> Result<Option<T>, String> {
    r.try_get::<_, Option<T>>(i).map_err(|e| e.to_string())
}

/// The core of every integer read, NULL kept apart.
fn int_from_pg(r: &postgres::Row, i: usize) -> Result<Option<i64>, String> {
    match pg_type(r, i)? {
        &Type::INT8 => pg_opt::<i64>(r, i),
        &Type::INT4 => Ok(pg_opt::<i32>(r, i)?.map(i64::from)),
        &Type::INT2 => Ok(pg_opt::<i16>(r, i)?.map(i64::from)),
        &Type::BOOL => Ok(pg_opt::<bool>(r, i)?.map(i64::from)),
        t => Err(format!("expected an integer, found {t}")),
    }
}

fn int_from_sqlite(v: ValueRef<'_>) -> Result<Option<i64>, String> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(i)),
        other => Err(format!(
            "expected an integer, found {:?}",
            other.data_type()
        )),
    }
}

const NULL: &str = "unexpected NULL";

impl FromSql for i64 {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        int_from_sqlite(v)?.ok_or_else(|| NULL.into())
    }
    fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, String> {
        int_from_pg(r, i)?.ok_or_else(|| NULL.into())
    }
}

macro_rules! narrow_int {
    ($t:ty) => {
        impl FromSql for $t {
            fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
                let i = i64::from_sqlite(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} out of range"))
            }
            fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, String> {
                let n = i64::from_pg(r, i)?;
                <$t>::try_from(n).map_err(|_| format!("{n} out of range"))
            }
        }
    };
}
narrow_int!(i32);
narrow_int!(u32);
narrow_int!(u64);
narrow_int!(usize);

impl FromSql for bool {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        Ok(i64::from_sqlite(v)? != 0)
    }
    fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, String> {
        Ok(i64::from_pg(r, i)? != 0)
    }
}

impl FromSql for f64 {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Real(f) => Ok(f),
            ValueRef::Integer(i) => Ok(i as f64),
            ValueRef::Null => Err(NULL.into()),
            other => Err(format!("expected a number, found {:?}", other.data_type())),
        }
    }
    fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, String> {
        let v = match *pg_type(r, i)? {
            Type::FLOAT8 => pg_opt::<f64>(r, i)?,
            Type::FLOAT4 => pg_opt::<f32>(r, i)?.map(f64::from),
            _ => int_from_pg(r, i)?.map(|n| n as f64),
        };
        v.ok_or_else(|| NULL.into())
    }
}

impl FromSql for String {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).map_err(|e| e.to_string()),
            ValueRef::Null => Err(NULL.into()),
            other => Err(format!("expected text, found {:?}", other.data_type())),
        }
    }
    fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, String> {
        pg_opt::<String>(r, i)?.ok_or_else(|| NULL.into())
    }
}

impl FromSql for Vec<u8> {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            ValueRef::Null => Err(NULL.into()),
            other => Err(format!("expected bytes, found {:?}", other.data_type())),
        }
    }
    fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, String> {
        pg_opt::<Vec<u8>>(r, i)?.ok_or_else(|| NULL.into())
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Null => Ok(None),
            v => T::from_sqlite(v).map(Some),
        }
    }
    fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, String> {
        // A NULL of any type reads as None; anything else as T.
        let null = r
            .try_get::<_, Option<Null>>(i)
            .map_err(|e| e.to_string())?
            .is_none();
        if null {
            Ok(None)
        } else {
            T::from_pg(r, i).map(Some)
        }
    }
}

/// Accepts any column type and reads nothing: only asks whether the value is NULL.
struct Null;
impl<'r> postgres::types::FromSql<'r> for Null {
    fn from_sql(_: &Type, _: &'r [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Null)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// `.optional()` on a [`Db::query_row`] result, as with rusqlite.
pub trait OptionalExt<T> {
    fn optional(self) -> Result<Option<T>, DbError>;
}
impl<T> OptionalExt<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Connections

/// One connection to HQ's store.
pub struct Db {
    inner: Inner,
}

enum Inner {
    Sqlite(rusqlite::Connection),
    // Boxed: the PostgreSQL client is several times the size of an SQLite handle.
    Postgres(Box<RefCell<Pg>>),
}

struct Pg {
    /// Always `Some` but while being dropped (see `Drop for Pg`).
    client: Option<postgres::Client>,
    config: postgres::Config,
    /// TLS to the server (`sslmode=verify-full`), used again on every reconnect.
    tls: Option<crate::pg_tls::RustlsConnect>,
    /// Prepared statements by the SQL text the store wrote (before rewriting).
    stmts: HashMap<String, postgres::Statement>,
    in_tx: bool,
    /// Rows changed on this connection, as SQLite's `total_changes()` counts them.
    changes: u64,
}

/// Past this many distinct statements the cache starts over (the queue's filters make
/// a few dozen shapes; nothing else is dynamic).
const PG_STATEMENT_CACHE: usize = 512;

/// Runs a blocking PostgreSQL call; on a multi-thread runtime's worker thread it first
/// steps out of the runtime (the driver blocks on a runtime of its own, which tokio does
/// not allow inside another).
fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Db {
    /// Opens (creating) an SQLite file with HQ's settings: WAL, `synchronous=FULL`, a
    /// busy timeout long enough for another worker's transaction.
    pub fn open_sqlite(path: &Path) -> Result<Db, DbError> {
        let conn = rusqlite::Connection::open(path)?;
        // First: another worker (or the console) may be writing or migrating the file now.
        conn.busy_timeout(Duration::from_secs(30))?;
        // Turning a new file to WAL can return "locked" at once, without waiting, when
        // several processes open it together (SQLite does not run the busy handler where
        // waiting could deadlock): try again for a few seconds.
        let mut tries = 0;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 100 =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                r => break r?,
            }
        }
        // HQ acks only what is durable: FULL fsyncs the WAL at every commit.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.set_prepared_statement_cache_capacity(256);
        Ok(Db {
            inner: Inner::Sqlite(conn),
        })
    }

    /// Connects to PostgreSQL by URL (`postgres://user@host:port/db`), names the session
    /// after `application_name`, and checks the server makes commits durable.
    pub fn connect_postgres(
        url: &str,
        password: Option<&str>,
        application_name: &str,
    ) -> Result<Db, DbError> {
        let (url, root_cert) = tls_params(url)?;
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| DbError::Setup(format!("PostgreSQL URL: {e}")))?;
        let tls = match &root_cert {
            Some(ca) => {
                config.ssl_mode(postgres::config::SslMode::Require);
                Some(crate::pg_tls::RustlsConnect::with_ca(ca)?)
            }
            None => {
                if config.get_ssl_mode() == postgres::config::SslMode::Require {
                    return Err(DbError::Setup(
                        "the PostgreSQL URL asks for TLS without a CA to verify the server by: \
                         use sslmode=verify-full&sslrootcert=/path/to/ca.pem"
                            .into(),
                    ));
                }
                // No TLS at all (not "prefer": a connection that may or may not be
                // encrypted is one nobody can reason about).
                config.ssl_mode(postgres::config::SslMode::Disable);
                None
            }
        };
        if let Some(p) = password {
            config.password(p);
        }
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let client = off_runtime(|| pg_session(&config, tls.as_ref()))?;
        Ok(Db {
            inner: Inner::Postgres(Box::new(RefCell::new(Pg {
                client: Some(client),
                config,
                tls,
                stmts: HashMap::new(),
                in_tx: false,
                changes: 0,
            }))),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// `" FOR UPDATE"` on PostgreSQL (a row lock, held to commit), nothing on SQLite
    /// (whose write transaction already excludes every other writer).
    pub fn for_update(&self) -> &'static str {
        match self.inner {
            Inner::Sqlite(_) => "",
            Inner::Postgres(_) => " FOR UPDATE",
        }
    }

    /// Rows changed through this connection since it opened.
    pub fn total_changes(&self) -> u64 {
        match &self.inner {
            Inner::Sqlite(c) => c.total_changes(),
            Inner::Postgres(pg) => pg.borrow().changes,
        }
    }

    /// Runs SQL text as it is (several statements; no parameters, no rewriting): for
    /// migrations and session settings.
    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                pg.ready()?;
                let c = pg.client()?;
                off_runtime(|| c.batch_execute(sql))?;
                Ok(())
            }
        }
    }

    /// Runs one statement; returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value<'_>]) -> Result<usize, DbError> {
        match &self.inner {
            Inner::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                Ok(st.execute(rusqlite::params_from_iter(params.iter()))?)
            }
            Inner::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let st = pg.statement(sql)?;
                let p = pg_params(params);
                let c = pg.client()?;
                let n = off_runtime(|| c.execute(&st, &p))?;
                if !is_select(sql) {
                    pg.changes += n;
                }
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// Every row of a query, each mapped by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        match &self.inner {
            Inner::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(f(&Row(RowInner::Sqlite(r)))?);
                }
                Ok(out)
            }
            Inner::Postgres(_) => {
                let rows = self.pg_query(sql, params)?;
                rows.iter()
                    .map(|r| f(&Row(RowInner::Postgres(r))))
                    .collect()
            }
        }
    }

    /// The first row of a query, mapped by `f`; [`DbError::NoRows`] when there is none
    /// (see [`OptionalExt::optional`]).
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        match &self.inner {
            Inner::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
                match rows.next()? {
                    Some(r) => f(&Row(RowInner::Sqlite(r))),
                    None => Err(DbError::NoRows),
                }
            }
            Inner::Postgres(_) => {
                let rows = self.pg_query(sql, params)?;
                match rows.first() {
                    Some(r) => f(&Row(RowInner::Postgres(r))),
                    None => Err(DbError::NoRows),
                }
            }
        }
    }

    /// Visits the rows of a query one at a time without holding them all (the audit log
    /// grows without bound). `f` must not use this connection.
    pub fn for_each(
        &self,
        sql: &str,
        params: &[Value<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        match &self.inner {
            Inner::Sqlite(c) => {
                let mut st = c.prepare(sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
                while let Some(r) = rows.next()? {
                    f(&Row(RowInner::Sqlite(r)))?;
                }
                Ok(())
            }
            Inner::Postgres(pg) => {
                use postgres::fallible_iterator::FallibleIterator;
                let mut pg = pg.borrow_mut();
                let st = pg.statement(sql)?;
                let p = pg_params(params);
                let c = pg.client()?;
                off_runtime(|| -> Result<(), DbError> {
                    let mut it = c.query_raw(&st, p.iter().copied())?;
                    while let Some(r) = it.next()? {
                        f(&Row(RowInner::Postgres(&r)))?;
                    }
                    Ok(())
                })
            }
        }
    }

    fn pg_query(&self, sql: &str, params: &[Value<'_>]) -> Result<Vec<postgres::Row>, DbError> {
        let Inner::Postgres(pg) = &self.inner else {
            return Err(DbError::Setup("not a PostgreSQL connection".into()));
        };
        let mut pg = pg.borrow_mut();
        let st = pg.statement(sql)?;
        let p = pg_params(params);
        let c = pg.client()?;
        let rows = off_runtime(|| c.query(&st, &p))?;
        // A write with RETURNING (an insert's new id, the outbox's take) changes rows too:
        // the group commit must see it (`total_changes`) to make the batch durable.
        if !is_select(sql) {
            pg.changes += rows.len().max(1) as u64;
        }
        Ok(rows)
    }

    /// Starts a write transaction: `BEGIN IMMEDIATE` on SQLite (it waits for, then
    /// excludes, every other writer), `BEGIN` (READ COMMITTED) on PostgreSQL, where the
    /// transaction takes the locks it needs itself. Dropped without
    /// [`Tx::commit`], it rolls back.
    pub fn transaction(&self) -> Result<Tx<'_>, DbError> {
        match &self.inner {
            Inner::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE")?,
            Inner::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                pg.ready()?;
                let c = pg.client()?;
                off_runtime(|| c.batch_execute("BEGIN"))?;
                pg.in_tx = true;
            }
        }
        Ok(Tx {
            db: self,
            done: false,
        })
    }
}

/// A read (or a lock taken by a SELECT): it changes no rows.
fn is_select(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("select"))
}

fn pg_params<'p>(params: &'p [Value<'_>]) -> Vec<&'p (dyn PgToSql + Sync)> {
    params.iter().map(|v| v as &(dyn PgToSql + Sync)).collect()
}

/// Connects and sets the session up as HQ needs it.
/// libpq's TLS parameters, which the `postgres` crate does not know, taken out of a URL:
/// `sslmode=verify-full` (or `verify-ca`, verified as strictly: rustls always checks the
/// host name) with `sslrootcert=PATH` (a PEM file; a plain path, not percent-encoded).
/// Returns the URL without them and the CA file when TLS is asked for.
fn tls_params(url: &str) -> Result<(String, Option<std::path::PathBuf>), DbError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut kept = Vec::new();
    let (mut verify, mut root) = (false, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", "verify-full" | "verify-ca")) => verify = true,
            Some(("sslrootcert", path)) => root = Some(std::path::PathBuf::from(path)),
            _ => kept.push(pair),
        }
    }
    match (verify, root) {
        (true, None) => Err(DbError::Setup(
            "sslmode=verify-full needs sslrootcert=/path/to/ca.pem in the PostgreSQL URL".into(),
        )),
        (_, root) => {
            let url = match kept.is_empty() {
                true => base.to_owned(),
                false => format!("{base}?{}", kept.join("&")),
            };
            Ok((url, root))
        }
    }
}

fn pg_session(
    config: &postgres::Config,
    tls: Option<&crate::pg_tls::RustlsConnect>,
) -> Result<postgres::Client, DbError> {
    let mut client = match tls {
        Some(t) => config.connect(t.clone())?,
        None => config.connect(postgres::NoTls)?,
    };
    // Commits wait for the WAL flush (the counterpart of SQLite's synchronous=FULL); a
    // lock wait is bounded as SQLite's busy timeout bounds it; a transaction left open by
    // a stuck worker does not hold its locks for ever.
    // Notices ("relation already exists, skipping" at each start) are not worth a log line.
    client.batch_execute(
        "SET synchronous_commit = on; SET lock_timeout = '30s';
         SET idle_in_transaction_session_timeout = '5min'; SET client_min_messages = warning",
    )?;
    let fsync: String = client.query_one("SHOW fsync", &[])?.try_get(0)?;
    if fsync != "on" {
        return Err(DbError::Setup(
            "the PostgreSQL server runs with fsync = off: HQ acknowledges only what is durable, \
             so it refuses to use it"
                .into(),
        ));
    }
    Ok(client)
}

impl Pg {
    /// Before a statement outside a transaction: a connection that dropped (server
    /// restart, network) is replaced, with a new statement cache.
    fn ready(&mut self) -> Result<(), DbError> {
        let closed = self.client.as_ref().is_none_or(|c| c.is_closed());
        if closed && !self.in_tx {
            tracing::warn!("PostgreSQL connection lost: reconnecting");
            let (config, tls) = (self.config.clone(), self.tls.clone());
            let old = self.client.take();
            self.stmts.clear();
            off_runtime(|| drop(old));
            self.client = Some(off_runtime(|| pg_session(&config, tls.as_ref()))?);
        }
        Ok(())
    }

    fn client(&mut self) -> Result<&mut postgres::Client, DbError> {
        self.client
            .as_mut()
            .ok_or_else(|| DbError::Setup("the PostgreSQL connection is closed".into()))
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, DbError> {
        self.ready()?;
        if let Some(st) = self.stmts.get(sql) {
            return Ok(st.clone());
        }
        if self.stmts.len() >= PG_STATEMENT_CACHE {
            self.stmts.clear();
        }
        let text = rewrite_placeholders(sql);
        let c = self.client()?;
        let st = off_runtime(|| c.prepare(&text))?;
        self.stmts.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

/// A write transaction on a [`Db`] (it derefs to it: queries inside it go through the
/// same connection).
pub struct Tx<'a> {
    db: &'a Db,
    done: bool,
}

impl std::ops::Deref for Tx<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

/// The classes of PostgreSQL advisory locks, taken in this order (see `store.rs`).
#[derive(Clone, Copy)]
#[repr(i32)]
enum LockClass {
    Migrations = 4,
    ApplicationId = 2,
    Blob = 1,
    Audit = 3,
}

/// A lock key from text: the first four bytes of its SHA-256. Two texts sharing a key
/// only wait for each other needlessly.
fn lock_key(s: &str) -> i32 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    i32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

impl Tx<'_> {
    pub fn commit(mut self) -> Result<(), DbError> {
        self.done = true;
        self.end("COMMIT")
    }

    fn end(&self, sql: &str) -> Result<(), DbError> {
        match &self.db.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                pg.in_tx = false;
                let c = pg.client()?;
                off_runtime(|| c.batch_execute(sql))?;
                Ok(())
            }
        }
    }
}

/// Locks for PostgreSQL's write transactions, held until commit or rollback; no-ops on
/// SQLite, whose `BEGIN IMMEDIATE` already excludes every other writer. Call them inside
/// a [`Tx`] (it derefs to `Db`), in the order of their classes.
impl Db {
    fn advisory(&self, class: LockClass, key: i32) -> Result<(), DbError> {
        if self.backend() == Backend::Postgres {
            self.execute(
                "SELECT pg_advisory_xact_lock(?1, ?2)",
                crate::vals![class as i32, key],
            )?;
        }
        Ok(())
    }

    /// Lock class 0: schema migrations, one process at a time.
    pub fn lock_migrations(&self) -> Result<(), DbError> {
        self.advisory(LockClass::Migrations, 0)
    }

    /// Lock class 1: one application id (of any bus), before reading whether it exists.
    pub fn lock_application_id(&self, id: &str) -> Result<(), DbError> {
        self.advisory(LockClass::ApplicationId, lock_key(id))
    }

    /// Lock class 2: blobs by hash, sorted by key, each once.
    pub fn lock_blobs<'s>(&self, shas: impl IntoIterator<Item = &'s str>) -> Result<(), DbError> {
        if self.backend() != Backend::Postgres {
            return Ok(());
        }
        let mut keys: Vec<i32> = shas.into_iter().map(lock_key).collect();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            self.advisory(LockClass::Blob, k)?;
        }
        Ok(())
    }

    /// Lock class 5 (last): the audit chain, just before appending to it.
    pub fn lock_audit(&self) -> Result<(), DbError> {
        self.advisory(LockClass::Audit, 0)
    }
}

/// The driver closes its connection and shuts its own runtime down when dropped, which
/// tokio forbids on a runtime's thread: step out first, as every other call does.
impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            off_runtime(|| drop(c));
        }
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.end("ROLLBACK") {
                tracing::debug!(error = %e, "rollback failed (the connection may be gone)");
            }
        }
    }
}

/// Rewrites SQLite's placeholders for PostgreSQL: `?NNN` → `$NNN`, a bare `?` → the next
/// number after the highest seen so far (SQLite's own rule). Literals (`'..'`, where a
/// backslash is not an escape), quoted identifiers and comments are copied as they are.
pub fn rewrite_placeholders(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut highest = 0u32;
    let mut i = 0;
    let mut copy_from = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'?' => {
                out.push_str(&sql[copy_from..i]);
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                let n = if end > start {
                    sql[start..end].parse().unwrap_or(u32::MAX)
                } else {
                    highest + 1
                };
                highest = highest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
                i = end;
                copy_from = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copy_from.min(sql.len())..]);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn libpq_tls_parameters_are_taken_out_of_the_url() {
        let (u, ca) = super::tls_params("postgres://a@h/db").unwrap();
        assert_eq!((u.as_str(), ca), ("postgres://a@h/db", None));
        let (u, ca) = super::tls_params(
            "postgres://a@h/db?sslmode=verify-full&sslrootcert=/etc/k/ca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(u, "postgres://a@h/db?connect_timeout=5");
        assert_eq!(ca, Some("/etc/k/ca.pem".into()));
        let (u, ca) = super::tls_params("postgres://a@h/db?sslrootcert=/ca.pem").unwrap();
        assert_eq!(
            (u.as_str(), ca),
            ("postgres://a@h/db", Some("/ca.pem".into()))
        );
        assert!(super::tls_params("postgres://a@h/db?sslmode=verify-ca").is_err());
    }

    /// Over TLS the server is verified against the CA the URL names (the test server's,
    /// from `.ci/postgres`): a connection is encrypted, one to a server another CA signed
    /// is refused, and `sslmode=require` alone (encrypted but unverified) is refused.
    #[test]
    fn tls_to_postgresql_verifies_the_server() {
        let t = "tls_to_postgresql_verifies_the_server";
        let (Some(url), Some(ca)) = (
            crate::testing::pg_admin_url(t),
            crate::testing::pg_test_ca(t),
        ) else {
            return;
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let ssl = |db: &super::Db| -> bool {
            db.query_row(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                crate::vals![],
                |r| r.get(0),
            )
            .unwrap()
        };
        let tls_url = format!("{url}{sep}sslmode=verify-full&sslrootcert={}", ca.display());
        let db = super::Db::connect_postgres(&tls_url, None, "tls-test").unwrap();
        assert!(ssl(&db), "the connection is encrypted");
        let plain = super::Db::connect_postgres(&url, None, "tls-test").unwrap();
        assert!(!ssl(&plain), "without TLS parameters, no TLS");
        // Another CA: the server's certificate does not verify.
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other-ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&other, params.self_signed(&key).unwrap().pem()).unwrap();
        let wrong = format!(
            "{url}{sep}sslmode=verify-full&sslrootcert={}",
            other.display()
        );
        let e = super::Db::connect_postgres(&wrong, None, "tls-test")
            .err()
            .expect("a server another CA signed is refused")
            .to_string();
        assert!(e.to_lowercase().contains("certificate"), "{e}");
        let e = super::Db::connect_postgres(&format!("{url}{sep}sslmode=require"), None, "t")
            .err()
            .expect("TLS without verification is refused")
            .to_string();
        assert!(e.contains("sslrootcert"), "{e}");
    }

    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_literals_and_comments() {
        assert_eq!(
            rewrite_placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?2"),
            "SELECT a FROM t WHERE b = $1 AND c = $2"
        );
        assert_eq!(
            rewrite_placeholders("x IN (?, ?, ?) AND y < ?"),
            "x IN ($1, $2, $3) AND y < $4"
        );
        assert_eq!(rewrite_placeholders("?3 ? ?1 ?"), "$3 $4 $1 $5");
        assert_eq!(rewrite_placeholders("?10 ?1"), "$10 $1");
        assert_eq!(
            rewrite_placeholders("name LIKE ? ESCAPE '\\' AND z = ?"),
            "name LIKE $1 ESCAPE '\\' AND z = $2"
        );
        assert_eq!(
            rewrite_placeholders("SELECT '?', 'it''s ?', \"q?\" -- ?\n, ? /* ? */ , ?"),
            "SELECT '?', 'it''s ?', \"q?\" -- ?\n, $1 /* ? */ , $2"
        );
    }

    #[test]
    fn values_bind_and_read_back_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("t.sqlite")).unwrap();
        db.execute_batch("CREATE TABLE t (i INTEGER, b INTEGER, f REAL, s TEXT, x BLOB)")
            .unwrap();
        let n: Option<i64> = None;
        db.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
            crate::vals![7u32, true, 1.5f64, "a", vec![1u8, 2]],
        )
        .unwrap();
        db.execute(
            "INSERT INTO t VALUES (?1, ?2, NULL, NULL, NULL)",
            crate::vals![n, false],
        )
        .unwrap();
        let rows = db
            .query_map("SELECT i, b, f, s, x FROM t ORDER BY rowid", &[], |r| {
                Ok((
                    r.get::<_, Option<u32>>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                ))
            })
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (Some(7), true, Some(1.5), Some("a".into()), Some(vec![1, 2])),
                (None, false, None, None, None)
            ]
        );
        assert!(matches!(
            db.query_row("SELECT i FROM t WHERE i = 99", &[], |r| r.get::<_, i64>(0)),
            Err(DbError::NoRows)
        ));
        // A rolled-back transaction leaves nothing.
        {
            let tx = db.transaction().unwrap();
            tx.execute("DELETE FROM t", &[]).unwrap();
        }
        let count: i64 = db
            .query_row("SELECT COUNT(*) FROM t", &[], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 2);
    }
}
