//! One SQL connection for the store, whichever database holds it: SQLite
//! (embedded, one machine) or PostgreSQL (several runners on one database).
//!
//! The store's statements are written once, in the SQL both understand,
//! with `?N` placeholders; [`Conn`] runs them on either. Values cross as
//! [`Value`]s (integers, text, bytes, NULL), so a row reads the same from
//! both. Where the dialects differ (locking, the queue's claim) the store
//! asks [`Conn::is_pg`] and says why.

use std::collections::HashMap;

use super::StoreError;
use super::pg::PgConn;

/// A value going into or coming out of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytes",
        }
    }
}

/// What a statement parameter can be.
pub trait Param {
    fn value(&self) -> Value;
}

impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value {
        (**self).value()
    }
}

impl Param for i64 {
    fn value(&self) -> Value {
        Value::Int(*self)
    }
}

impl Param for i32 {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl Param for u32 {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl Param for bool {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl Param for str {
    fn value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl Param for String {
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl Param for [u8] {
    fn value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl Param for Vec<u8> {
    fn value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Param::value)
    }
}

/// Statement parameters: `p![a, b]` is `?1 = a, ?2 = b`.
macro_rules! p {
    ($($x:expr),* $(,)?) => {
        &[$($crate::service::store::sql::Param::value(&$x)),*][..]
    };
}
pub(crate) use p;

/// What a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
    const WHAT: &'static str;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    const WHAT: &'static str = "an integer";
}

impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u32::try_from(i).ok())
    }
    const WHAT: &'static str = "a small count";
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
    const WHAT: &'static str = "a flag";
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            Value::Blob(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        }
    }
    const WHAT: &'static str = "text";
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            Value::Text(s) => Some(s.clone().into_bytes()),
            _ => None,
        }
    }
    const WHAT: &'static str = "bytes";
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
    const WHAT: &'static str = T::WHAT;
}

/// A row read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub(super) Vec<Value>);

impl Row {
    /// Column `i` as a `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("a row has no column {i}")))?;
        T::from_value(v).ok_or_else(|| {
            StoreError::Corrupt(format!("column {i} holds {}, not {}", v.kind(), T::WHAT))
        })
    }
}

/// A connection to the store's database, for one call.
#[derive(Debug)]
pub enum Conn<'a> {
    Sqlite(&'a rusqlite::Connection),
    Pg(&'a PgConn),
}

impl Conn<'_> {
    /// Whether this is PostgreSQL (several runners may share it).
    pub fn is_pg(&self) -> bool {
        matches!(self, Conn::Pg(_))
    }

    /// Runs a statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<usize, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                Ok(st.execute(rusqlite::params_from_iter(params.iter().map(sqlite_value)))?)
            }
            Conn::Pg(c) => c.execute(sql, params),
        }
    }

    /// Runs a query; returns all its rows.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let width = st.column_count();
                let mut rows =
                    st.query(rusqlite::params_from_iter(params.iter().map(sqlite_value)))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut row = Vec::with_capacity(width);
                    for i in 0..width {
                        row.push(from_sqlite(r.get_ref(i)?)?);
                    }
                    out.push(Row(row));
                }
                Ok(out)
            }
            Conn::Pg(c) => c.query(sql, params),
        }
    }

    /// The rows of a query, each through `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.query(sql, params)?.iter().map(f).collect()
    }

    /// The first row of a query through `f`, if there is one.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.query(sql, params)?.first().map(f).transpose()
    }

    /// The first row of a query through `f`; a query without rows is an
    /// error (for statements that always answer, such as `COUNT(*)`).
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| StoreError::Corrupt("a row the database should hold is missing".into()))
    }

    /// Runs statements without parameters (schema changes).
    pub fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Pg(c) => c.batch(sql),
        }
    }

    /// Starts a transaction, rolled back unless committed. On SQLite it
    /// takes the write lock at once (`IMMEDIATE`), so read-then-write never
    /// fails half-way; on PostgreSQL, statements that must see one state
    /// lock what they read (`FOR UPDATE`, [`Conn::serialize`]).
    pub fn transaction(&self) -> Result<Tx<'_, '_>, StoreError> {
        self.batch(if self.is_pg() {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        })?;
        Ok(Tx {
            conn: self,
            open: true,
        })
    }

    /// On PostgreSQL, tells every runner listening (see `pg::listen`)
    /// `payload`, when the transaction commits; a no-op on SQLite, whose
    /// one runner knows already.
    pub fn notify(&self, payload: &str) -> Result<(), StoreError> {
        if self.is_pg() {
            self.query("SELECT pg_notify(?1, ?2)", p![super::pg::CHANNEL, payload])?;
        }
        Ok(())
    }

    /// A statement to run (possibly several times).
    pub fn prepare(&self, sql: &str) -> Result<Stmt<'_, '_>, StoreError> {
        Ok(Stmt {
            conn: self,
            sql: sql.to_owned(),
        })
    }

    /// On PostgreSQL, serialises the rest of the transaction with every
    /// other holding `lock` (released at commit); SQLite transactions are
    /// serialised already.
    pub fn serialize(&self, lock: Lock) -> Result<(), StoreError> {
        if self.is_pg() {
            self.query("SELECT pg_advisory_xact_lock(?1)", p![lock as i64])?;
        }
        Ok(())
    }
}

/// A statement and its connection.
#[derive(Debug)]
pub struct Stmt<'c, 'a> {
    conn: &'c Conn<'a>,
    sql: String,
}

impl Stmt<'_, '_> {
    pub fn execute(&mut self, params: &[Value]) -> Result<usize, StoreError> {
        self.conn.execute(&self.sql, params)
    }

    pub fn query(&mut self, params: &[Value]) -> Result<Rows, StoreError> {
        Ok(Rows(self.conn.query(&self.sql, params)?.into_iter()))
    }

    pub fn query_map<T>(
        &mut self,
        params: &[Value],
        f: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<std::vec::IntoIter<Result<T, StoreError>>, StoreError> {
        let rows = self.conn.query(&self.sql, params)?;
        Ok(rows.iter().map(f).collect::<Vec<_>>().into_iter())
    }
}

/// The rows of a query, in order.
#[derive(Debug)]
pub struct Rows(std::vec::IntoIter<Row>);

impl Rows {
    #[allow(clippy::should_implement_trait)] // reads like rusqlite's, which the store was written for
    pub fn next(&mut self) -> Result<Option<Row>, StoreError> {
        Ok(self.0.next())
    }
}

/// An open transaction; rolled back when dropped uncommitted.
#[derive(Debug)]
pub struct Tx<'c, 'a> {
    conn: &'c Conn<'a>,
    open: bool,
}

impl Tx<'_, '_> {
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.open = false;
        self.conn.batch("COMMIT")
    }
}

impl<'a> std::ops::Deref for Tx<'_, 'a> {
    type Target = Conn<'a>;
    fn deref(&self) -> &Conn<'a> {
        self.conn
    }
}

impl Drop for Tx<'_, '_> {
    fn drop(&mut self) {
        if self.open {
            // The error that made us give up is the one reported.
            let _ = self.conn.batch("ROLLBACK");
        }
    }
}

/// Advisory locks: what concurrent writers on PostgreSQL take turns at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum Lock {
    /// The audit chain's head: one append at a time.
    AuditChain = 0x7275_6e00_0001,
    /// The queue's length, checked before an insert.
    QueueBound = 0x7275_6e00_0002,
    /// Schema migrations, run by whichever runner starts first.
    Migrations = 0x7275_6e00_0003,
}

fn sqlite_value(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Null => S::Null,
        Value::Int(i) => S::Integer(*i),
        Value::Text(s) => S::Text(s.clone()),
        Value::Blob(b) => S::Blob(b.clone()),
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Result<Value, StoreError> {
    use rusqlite::types::ValueRef as S;
    Ok(match v {
        S::Null => Value::Null,
        S::Integer(i) => Value::Int(i),
        S::Real(f) => Value::Int(f as i64),
        S::Text(t) => Value::Text(
            String::from_utf8(t.to_vec())
                .map_err(|_| StoreError::Corrupt("a text column holds invalid UTF-8".into()))?,
        ),
        S::Blob(b) => Value::Blob(b.to_vec()),
    })
}

/// `?N` placeholders as PostgreSQL's `$N`, SQLite's empty blob literal and
/// blob casts as PostgreSQL's; text in quotes is left alone.
pub(super) fn to_pg(sql: &str) -> String {
    // SQLite's name for bytes (in casts) is PostgreSQL's BYTEA.
    let sql = &sql.replace(" AS BLOB)", " AS BYTEA)");
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            'X' if !quoted && sql_rest_starts(&mut chars, "''") => out.push_str("''::bytea"),
            _ => out.push(ch),
        }
    }
    out
}

/// Consumes `prefix` from `chars` when they start with it.
fn sql_rest_starts(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, prefix: &str) -> bool {
    let ahead: String = chars.clone().take(prefix.len()).collect();
    if ahead == prefix {
        for _ in 0..prefix.len() {
            chars.next();
        }
        true
    } else {
        false
    }
}

/// Prepared statements of one PostgreSQL connection, by their text.
pub(super) type StatementCache = HashMap<String, tokio_postgres::Statement>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_empty_blobs_become_postgres_syntax() {
        assert_eq!(
            to_pg("UPDATE runs SET request = X'' WHERE id = ?1 AND note = 'why? ?2' AND n = ?12"),
            "UPDATE runs SET request = ''::bytea WHERE id = $1 AND note = 'why? ?2' AND n = $12"
        );
        assert_eq!(
            to_pg("SELECT CAST(log AS BLOB)"),
            "SELECT CAST(log AS BYTEA)"
        );
    }

    #[test]
    fn columns_read_as_what_they_hold() {
        let row = Row(vec![
            Value::Int(3),
            Value::Null,
            Value::Text("a".into()),
            Value::Blob(b"b".to_vec()),
        ]);
        assert_eq!(row.get::<i64>(0).unwrap(), 3);
        assert_eq!(row.get::<Option<i64>>(1).unwrap(), None);
        assert_eq!(row.get::<String>(2).unwrap(), "a");
        assert_eq!(row.get::<Vec<u8>>(3).unwrap(), b"b");
        let e = row.get::<i64>(2).unwrap_err();
        assert!(e.to_string().contains("not an integer"), "{e}");
    }
}
