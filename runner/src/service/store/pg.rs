//! PostgreSQL connections: a small pool of `tokio-postgres` clients whose
//! connections are driven on a runtime thread of their own, so the store
//! stays synchronous (like rusqlite) and may be called from a blocking
//! thread or from async code alike. A connection the server dropped (it
//! restarted) is discarded and a new one made on the next call.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake};
use std::time::Duration;

use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::StoreError;
use super::sql::{Row, StatementCache, Value, to_pg};

/// The channel runners tell each other on: `cancel:<run>` (stop it, if
/// it is yours), `done:<run>` (it reached its final state), `started:<run>`.
pub const CHANNEL: &str = "runner_events";

/// Connections open at once, per runner process.
const MAX_CONNECTIONS: usize = 16;

/// Runs `f` to completion on this thread. The futures it is used for only
/// exchange messages with connection tasks on the pool's runtime, so they
/// need no runtime here (and this works inside one, like a blocking
/// SQLite call does).
pub(super) fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// The runtime the pool's connections run on: one thread, ended when the
/// pool is dropped.
#[derive(Debug)]
pub(super) struct PgRuntime {
    pub(super) handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl PgRuntime {
    fn start() -> Result<PgRuntime, StoreError> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                let _ = rt.block_on(stopped);
            })
            .map_err(|e| StoreError::Task(format!("cannot start the database thread: {e}")))?;
        let handle = rx
            .recv()
            .map_err(|e| StoreError::Task(e.to_string()))?
            .map_err(StoreError::Task)?;
        Ok(PgRuntime {
            handle,
            _stop: stop,
        })
    }
}

/// A PostgreSQL URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgres://…".into();
    };
    let (auth, host) = rest.rsplit_once('@').map_or(("", rest), |(a, h)| (a, h));
    let user = auth.split(':').next().unwrap_or("");
    let host = host.split('?').next().unwrap_or(host);
    if user.is_empty() {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{user}@{host}")
    }
}

/// Whether `database` names a PostgreSQL server rather than a SQLite file.
pub fn is_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// One connection and its prepared statements.
pub struct PgConn {
    client: tokio_postgres::Client,
    statements: std::cell::RefCell<StatementCache>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").finish_non_exhaustive()
    }
}

impl PgConn {
    fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement, StoreError> {
        if let Some(st) = self.statements.borrow().get(sql) {
            return Ok(st.clone());
        }
        let st = block_on(self.client.prepare(&to_pg(sql)))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    pub(super) fn execute(&self, sql: &str, params: &[Value]) -> Result<usize, StoreError> {
        let st = self.statement(sql)?;
        let values: Vec<PgValue<'_>> = params.iter().map(PgValue).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        Ok(block_on(self.client.execute(&st, &refs))? as usize)
    }

    pub(super) fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let st = self.statement(sql)?;
        let values: Vec<PgValue<'_>> = params.iter().map(PgValue).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let rows = block_on(self.client.query(&st, &refs))?;
        rows.iter().map(read_row).collect()
    }

    pub(super) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(block_on(self.client.batch_execute(sql))?)
    }
}

fn read_row(r: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut out = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else if *ty == Type::VOID {
            None
        } else {
            return Err(StoreError::Corrupt(format!(
                "column {:?} has type {ty}, which the store does not read",
                col.name()
            )));
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

/// A [`Value`] as the parameter type the server inferred for it.
#[derive(Debug)]
struct PgValue<'a>(&'a Value);

impl ToSql for PgValue<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let text = [
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
            Type::UNKNOWN,
        ];
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) if *ty == Type::INT8 => i.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::BOOL => (*i != 0).to_sql(ty, out),
            Value::Int(i) if text.contains(ty) => i.to_string().as_str().to_sql(ty, out),
            Value::Text(s) if text.contains(ty) => s.as_str().to_sql(ty, out),
            Value::Text(s) if *ty == Type::BYTEA => s.as_bytes().to_sql(ty, out),
            Value::Blob(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            v => Err(format!("a parameter of type {ty} cannot take {v:?}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Runs a connection until it closes, sending what the server says unasked
/// (notifications) to `messages`.
async fn drive<S, T>(
    connection: tokio_postgres::Connection<S, T>,
    messages: Option<tokio::sync::mpsc::UnboundedSender<tokio_postgres::AsyncMessage>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut connection = std::pin::pin!(connection);
    std::future::poll_fn(|cx| {
        loop {
            match connection.as_mut().poll_message(cx) {
                Poll::Ready(Some(Ok(m))) => {
                    if let Some(tx) = &messages {
                        let _ = tx.send(m);
                    }
                }
                // The client sees the error on its next call.
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
}

/// Connections to one server, made as needed, at most [`MAX_CONNECTIONS`].
#[derive(Debug)]
pub struct PgPool {
    config: tokio_postgres::Config,
    /// For messages: the URL without its password.
    pub(super) shown: String,
    pub(super) runtime: PgRuntime,
    idle: Mutex<(Vec<PgConn>, usize)>,
    freed: Condvar,
}

impl PgPool {
    pub fn new(url: &str) -> Result<PgPool, StoreError> {
        let shown = redact(url);
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| StoreError::Connect {
                database: shown.clone(),
                message: format!("the URL is not valid ({e}); write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // A server cut off by the network (packets dropped, no reset) must
        // not hang this runner's calls for the kernel's 15 minutes of
        // retransmissions: unacknowledged data fails the connection after
        // TCP_USER_TIMEOUT, and an idle one (the listener) is probed by
        // keepalives. The call then fails as unavailable and the pool
        // reconnects once the network is back. Both stay well under the
        // lease, so a cut-off runner notices before the others reap it.
        config.keepalives_idle(Duration::from_secs(5));
        config.keepalives_interval(Duration::from_secs(2));
        config.keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(8));
        config.application_name("runner");
        Ok(PgPool {
            config,
            shown,
            runtime: PgRuntime::start()?,
            idle: Mutex::new((Vec::new(), 0)),
            freed: Condvar::new(),
        })
    }

    /// A new connection, its messages (notifications) sent to `messages`.
    pub(super) fn connect(
        &self,
        messages: Option<tokio::sync::mpsc::UnboundedSender<tokio_postgres::AsyncMessage>>,
    ) -> Result<tokio_postgres::Client, StoreError> {
        let config = self.config.clone();
        let connected = self
            .runtime
            .handle
            .spawn(async move { config.connect(tokio_postgres::NoTls).await });
        let (client, connection) = block_on(connected)
            .map_err(|e| StoreError::Task(e.to_string()))?
            .map_err(|e| StoreError::Connect {
                database: self.shown.clone(),
                message: e.to_string(),
            })?;
        self.runtime.handle.spawn(drive(connection, messages));
        Ok(client)
    }

    /// Listens on [`CHANNEL`]: each notification's payload, in order, and
    /// `resync` whenever listening (re)starts, since what was sent while
    /// no connection listened is lost: the listener then reads the state.
    /// Reconnects every second while the server is away.
    pub fn listen(&self) -> tokio::sync::mpsc::UnboundedReceiver<String> {
        let (out, rx) = tokio::sync::mpsc::unbounded_channel();
        let config = self.config.clone();
        self.runtime.handle.spawn(async move {
            loop {
                if let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await {
                    let (tx, mut messages) = tokio::sync::mpsc::unbounded_channel();
                    let driver = tokio::spawn(drive(connection, Some(tx)));
                    if client
                        .batch_execute(&format!("LISTEN {CHANNEL}"))
                        .await
                        .is_ok()
                        && out.send("resync".into()).is_ok()
                    {
                        while let Some(m) = messages.recv().await {
                            if let tokio_postgres::AsyncMessage::Notification(n) = m
                                && out.send(n.payload().to_owned()).is_err()
                            {
                                return;
                            }
                        }
                    }
                    driver.abort();
                }
                if out.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        rx
    }

    /// Runs `f` on a pooled connection.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&PgConn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.checkout()?;
        let out = f(&conn);
        let mut idle = self.idle.lock().map_err(|_| poisoned())?;
        if conn.client.is_closed() {
            idle.1 -= 1;
        } else {
            idle.0.push(conn);
        }
        drop(idle);
        self.freed.notify_one();
        out
    }

    fn checkout(&self) -> Result<PgConn, StoreError> {
        let mut idle = self.idle.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(c) = idle.0.pop() {
                if c.client.is_closed() {
                    idle.1 -= 1;
                    continue;
                }
                return Ok(c);
            }
            if idle.1 < MAX_CONNECTIONS {
                idle.1 += 1;
                drop(idle);
                return match self.connect(None) {
                    Ok(client) => Ok(PgConn {
                        client,
                        statements: Default::default(),
                    }),
                    Err(e) => {
                        if let Ok(mut idle) = self.idle.lock() {
                            idle.1 -= 1;
                        }
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            idle = self.freed.wait(idle).map_err(|_| poisoned())?;
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Task("a database call panicked earlier".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://runner:s3cret@db.example:5432/runner?sslmode=disable"),
            "postgres://runner@db.example:5432/runner"
        );
        assert_eq!(redact("postgres://localhost/x"), "postgres://localhost/x");
        assert_eq!(redact("postgresql://u:p@h/d"), "postgresql://u@h/d");
    }

    #[test]
    fn block_on_runs_a_future_without_a_runtime() {
        assert_eq!(block_on(async { 41 + 1 }), 42);
    }
}
