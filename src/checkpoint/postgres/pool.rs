//! A small connection pool of our own: idle connections on a stack, at most `pool_size`
//! open, callers waiting on a condition variable when all are busy. A call that finds its
//! connection dead (server restart, `pg_terminate_backend`, a pooler's idle timeout) drops
//! it and every idle one (they are likely dead too) and retries once on a new connection.
//! Counters of what happened (waits, timeouts, connections opened and dropped) are kept in
//! atomics touched only off the fast path: a call that finds an idle connection counts nothing.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Socket, Statement, ToStatement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conninfo::{ConnInfo, SslMode};
use super::{tls, PgOptions};
use crate::checkpoint::fork::Opener;
use crate::error::{Error, Result};

type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

/// One statement of a [`Client::pipeline`], borrowing the client and its parameters.
pub type Step<'a, T> = Pin<Box<dyn Future<Output = PgResult<T>> + 'a>>;

/// A connection: tokio-postgres's client, driven by a current-thread runtime of its own, so
/// that each call blocks its caller as the blocking `postgres` crate does (the runtime runs the
/// connection's task only while a call waits on it, on the caller's thread). Besides one
/// statement at a time, it sends several at once ([`Client::pipeline`]).
pub struct Client {
    /// `None` only while dropping.
    client: Option<tokio_postgres::Client>,
    /// The task reading and writing the socket; awaited on drop so that the server gets its
    /// `Terminate` message.
    connection: Option<tokio::task::JoinHandle<()>>,
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// Connects, driving the connection with `rt` from now on.
    fn connect<T>(rt: tokio::runtime::Runtime, config: &tokio_postgres::Config, tls: T) -> PgResult<Client>
    where
        T: MakeTlsConnect<Socket> + 'static + Send,
        T::TlsConnect: Send,
        T::Stream: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let (client, connection) = rt.block_on(config.connect(tls))?;
        // A connection error also fails the call waiting on it, which reports it.
        let connection = rt.spawn(async move {
            let _ = connection.await;
        });
        Ok(Client {
            client: Some(client),
            connection: Some(connection),
            rt,
        })
    }

    /// The client, to build the steps of a [`Client::pipeline`].
    pub fn inner(&self) -> &tokio_postgres::Client {
        self.client.as_ref().expect("the client is only taken while dropping")
    }

    pub fn prepare(&mut self, query: &str) -> PgResult<Statement> {
        self.rt.block_on(self.inner().prepare(query))
    }

    pub fn query<T: ?Sized + ToStatement>(&mut self, query: &T, params: &[&(dyn ToSql + Sync)]) -> PgResult<Vec<Row>> {
        self.rt.block_on(self.inner().query(query, params))
    }

    pub fn query_one<T: ?Sized + ToStatement>(&mut self, query: &T, params: &[&(dyn ToSql + Sync)]) -> PgResult<Row> {
        self.rt.block_on(self.inner().query_one(query, params))
    }

    pub fn query_opt<T: ?Sized + ToStatement>(
        &mut self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> PgResult<Option<Row>> {
        self.rt.block_on(self.inner().query_opt(query, params))
    }

    pub fn execute<T: ?Sized + ToStatement>(&mut self, query: &T, params: &[&(dyn ToSql + Sync)]) -> PgResult<u64> {
        self.rt.block_on(self.inner().execute(query, params))
    }

    /// Runs statements without parameters, as one simple query.
    pub fn batch_execute(&mut self, query: &str) -> PgResult<()> {
        self.rt.block_on(self.inner().batch_execute(query))
    }

    /// Runs `steps` in order, sent together (each statement is queued before any reply is read,
    /// so the lot costs one round trip), and returns every step's own result. The server runs
    /// them one after the other, as if sent one at a time: a step that fails does not stop the
    /// later ones (inside a transaction they fail too, the transaction being aborted).
    pub fn pipeline<'a, T>(&'a self, steps: Vec<Step<'a, T>>) -> Vec<PgResult<T>> {
        let mut steps: Vec<Option<Step<'a, T>>> = steps.into_iter().map(Some).collect();
        let mut out: Vec<Option<PgResult<T>>> = steps.iter().map(|_| None).collect();
        self.rt.block_on(std::future::poll_fn(|cx| {
            // Polled in order: the first poll of each step queues its messages.
            let mut pending = false;
            for (step, slot) in steps.iter_mut().zip(out.iter_mut()) {
                if let Some(f) = step {
                    match f.as_mut().poll(cx) {
                        Poll::Ready(r) => {
                            *slot = Some(r);
                            *step = None;
                        }
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }));
        out.into_iter().map(|r| r.expect("every step finished")).collect()
    }

    pub fn is_closed(&self) -> bool {
        self.inner().is_closed()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Dropping the client ends the connection's task, which sends `Terminate`; wait a
        // little for it (a dead network must not hold up the caller).
        drop(self.client.take());
        if let Some(task) = self.connection.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(1), task).await });
        }
    }
}

/// Run on every new connection before its first statement: no JIT (see the comment where it
/// is run), and READ COMMITTED for the statements that are a transaction of their own (the
/// one-statement puts take their thread's lock, then read a delta's base with a row lock, which
/// only READ COMMITTED checks against what committed while they waited; see
/// [`super::sql::BEGIN`]).
pub const SESSION_SETTINGS: &str = "SET jit = off; SET default_transaction_isolation = 'read committed'";

/// One connection and its prepared statements.
pub struct Conn {
    pub client: Client,
    /// Keyed by where the text is: every statement's text is built once per process and never
    /// freed, so a lookup costs no hashing of a long text. (The same text at two addresses is
    /// prepared twice, which is harmless.)
    statements: HashMap<(usize, usize), Statement>,
}

impl Conn {
    /// The statement for `sql`, prepared once per connection.
    pub fn prepare(&mut self, sql: &'static str) -> std::result::Result<Statement, tokio_postgres::Error> {
        let key = (sql.as_ptr() as usize, sql.len());
        if let Some(s) = self.statements.get(&key) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(key, s.clone());
        Ok(s)
    }
}

struct State {
    idle: Vec<Conn>,
    open: usize,
    closed: bool,
    /// The process that opened the connections: a forked child must not use its parent's.
    /// Checked at every call without a system call ([`Opener::forked`]).
    opener: Opener,
    /// Callers waiting on [`Pool::freed`] for a connection: a connection given back wakes one
    /// only when there is one (a wake-up is a system call even when no one waits).
    waiting: usize,
}

/// What the pool holds now, and what happened to it since it was made (in this process: a
/// forked child starts from zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open now, busy or idle.
    pub open: usize,
    /// Connections open and free now.
    pub idle: usize,
    /// Callers waiting for a connection now.
    pub waiting: usize,
    /// Calls that found every connection busy and waited for one.
    pub waits: u64,
    /// Waits that reached `pool_timeout` without being woken. Each is followed by the
    /// pool_timeout error, unless a connection was freed at that very moment; one that finds
    /// a connection free although no caller was woken for it means a lost wake-up.
    pub waits_timed_out: u64,
    /// Calls that failed with the pool_timeout error.
    pub timeouts: u64,
    /// Time callers spent waiting for a connection, all waits added up.
    pub waited: Duration,
    /// Connections opened, the first one included.
    pub opened: u64,
    /// Connections closed because a call found its connection dead: the dead one and the
    /// idle ones dropped with it.
    pub dropped: u64,
    /// Calls that found their connection dead (each then ran once more on a new connection).
    pub reconnects: u64,
}

/// The counters behind [`PoolStats`], relaxed atomics: each is a count of its own, read
/// without ordering against the others.
#[derive(Default)]
struct Counters {
    waits: AtomicU64,
    waits_timed_out: AtomicU64,
    timeouts: AtomicU64,
    waited_nanos: AtomicU64,
    opened: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn reset(&self) {
        for c in [
            &self.waits,
            &self.waits_timed_out,
            &self.timeouts,
            &self.waited_nanos,
            &self.opened,
            &self.dropped,
            &self.reconnects,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

pub struct Pool {
    info: ConnInfo,
    /// None: no TLS (sslmode=disable, or only unix sockets, which never use TLS).
    tls: Option<MakeRustlsConnect>,
    max: usize,
    pool_timeout: Duration,
    statement_timeout: Option<Duration>,
    state: Mutex<State>,
    freed: Condvar,
    counters: Counters,
}

impl Pool {
    /// Opens the first connection now, so that a bad address or password fails at once.
    pub fn new(info: ConnInfo, options: &PgOptions) -> Result<Pool> {
        let pool = Pool::without_connection(info, options)?;
        let first = pool.get()?;
        pool.put_back(first);
        Ok(pool)
    }

    /// The pool, with no connection opened yet.
    fn without_connection(mut info: ConnInfo, options: &PgOptions) -> Result<Pool> {
        if options.pool_size == 0 {
            return Err(Error::Invalid("pool_size must be at least 1".into()));
        }
        if info.config.get_connect_timeout().is_none() {
            info.config.connect_timeout(options.connect_timeout);
        }
        if info.config.get_application_name().is_none() {
            info.config.application_name("fast-langgraph");
        }
        let only_sockets = info
            .config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
        let tls = if info.ssl_mode == SslMode::Disable || only_sockets {
            None
        } else {
            Some(tls::connector(info.ssl_mode, info.ssl_root_cert.as_deref())?)
        };
        let pool = Pool {
            info,
            tls,
            max: options.pool_size,
            pool_timeout: options.pool_timeout,
            statement_timeout: options.statement_timeout,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                closed: false,
                opener: Opener::here(),
                waiting: 0,
            }),
            freed: Condvar::new(),
            counters: Counters::default(),
        };
        Ok(pool)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the server is: host, port, user and database (never the password).
    pub fn where_(&self) -> String {
        let c = &self.info.config;
        let host = c
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let ports = c.get_ports().iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        format!(
            "PostgreSQL at {host}{}{ports} (user {:?}, database {:?})",
            if ports.is_empty() { "" } else { ":" },
            c.get_user().unwrap_or(""),
            c.get_dbname().unwrap_or(c.get_user().unwrap_or(""))
        )
    }

    fn connect(&self) -> Result<Conn> {
        let started = Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Postgres {
                message: format!("cannot start the client's runtime for {}: {e}", self.where_()),
                connection: true,
            })?;
        let connected = match &self.tls {
            Some(tls) => Client::connect(rt, &self.info.config, tls.clone()),
            None => Client::connect(rt, &self.info.config, tokio_postgres::NoTls),
        };
        let mut client = connected.map_err(|e| Error::Postgres {
            message: format!(
                "cannot connect to {} after {:.1} s: {}",
                self.where_(),
                started.elapsed().as_secs_f64(),
                describe(&e)
            ),
            connection: true,
        })?;
        // Every statement here is a short lookup or insert, which JIT compilation only slows:
        // the server compiles a plan whose estimated cost passes `jit_above_cost` (100,000 by
        // default), and the estimates of `list`'s walk over many checkpoints pass it, costing
        // 30-600 ms of compilation per call for a statement that runs in 30 ms.
        let mut session = String::from(SESSION_SETTINGS);
        if let Some(t) = self.statement_timeout {
            session.push_str(&format!("; SET statement_timeout = {}", t.as_millis()));
        }
        client.batch_execute(&session).map_err(|e| Error::Postgres {
            message: format!(
                "setting up the session ({session}) on {}: {}",
                self.where_(),
                describe(&e)
            ),
            connection: true,
        })?;
        Counters::add(&self.counters.opened, 1);
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// In a forked child, forgets the parent's connections and counts: the copied connections
    /// share sockets with the parent's, so they are left unclosed (closing would end the
    /// parent's sessions) and the child opens its own. No caller of the parent waits here:
    /// only the forking thread was copied.
    fn adopt_fork(&self, st: &mut State) {
        if !st.opener.forked() {
            return;
        }
        for conn in st.idle.drain(..) {
            std::mem::forget(conn);
        }
        st.open = 0;
        st.waiting = 0;
        st.opener = Opener::here();
        self.counters.reset();
    }

    /// An idle connection, or a new one, or the next one freed.
    fn get(&self) -> Result<Conn> {
        let deadline = Instant::now() + self.pool_timeout;
        let mut waited = false;
        let mut st = self.lock();
        loop {
            if st.closed {
                return Err(Error::Closed(
                    "the Postgres checkpointer is closed (close() was called)".into(),
                ));
            }
            self.adopt_fork(&mut st);
            if let Some(conn) = st.idle.pop() {
                return Ok(conn);
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return self.connect().inspect_err(|_| {
                    let mut st = self.lock();
                    st.open -= 1;
                    self.wake_one(st);
                });
            }
            let now = Instant::now();
            if now >= deadline {
                Counters::add(&self.counters.timeouts, 1);
                return Err(Error::Postgres {
                    message: format!(
                        "every connection of the pool (pool_size={}) to {} stayed busy for the pool_timeout of \
                         {:.1} s (raise pool_size or pool_timeout)",
                        self.max,
                        self.where_(),
                        self.pool_timeout.as_secs_f64()
                    ),
                    connection: false,
                });
            }
            // The wait path: counted here only, so that a call finding a connection free
            // costs no counter.
            if !waited {
                waited = true;
                Counters::add(&self.counters.waits, 1);
            }
            st.waiting += 1;
            let (guard, result) = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner);
            st = guard;
            st.waiting = st.waiting.saturating_sub(1);
            Counters::add(
                &self.counters.waited_nanos,
                u64::try_from(now.elapsed().as_nanos()).unwrap_or(u64::MAX),
            );
            if result.timed_out() {
                Counters::add(&self.counters.waits_timed_out, 1);
            }
        }
    }

    /// Releases the pool's lock and wakes one caller waiting for a connection, if any.
    fn wake_one(&self, st: MutexGuard<'_, State>) {
        let waiting = st.waiting > 0;
        drop(st);
        if waiting {
            self.freed.notify_one();
        }
    }

    fn put_back(&self, conn: Conn) {
        let mut st = self.lock();
        if st.closed || st.opener.forked() {
            st.open = st.open.saturating_sub(1);
            self.wake_one(st);
            drop(conn);
        } else {
            st.idle.push(conn);
            self.wake_one(st);
        }
    }

    /// Drops a dead connection and every idle one.
    fn discard(&self, conn: Conn) {
        let mut st = self.lock();
        let idle: Vec<Conn> = st.idle.drain(..).collect();
        st.open = st.open.saturating_sub(1 + idle.len());
        drop(st);
        Counters::add(&self.counters.dropped, 1 + idle.len() as u64);
        Counters::add(&self.counters.reconnects, 1);
        self.freed.notify_all();
        drop(conn);
        drop(idle);
    }

    /// Runs `f` on a connection; see [`Pool::run_with`].
    pub fn run<T>(
        &self,
        what: &str,
        f: impl FnMut(&mut Conn) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        self.run_with(|| what.to_owned(), f)
    }

    /// Runs `f` on a pooled connection. If the connection turns out dead, `f` runs once more
    /// on a new one: every statement here is idempotent, and a transaction the server did not
    /// commit was rolled back whole. Errors name `what()`.
    pub fn run_with<T>(
        &self,
        what: impl Fn() -> String,
        mut f: impl FnMut(&mut Conn) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let mut retried = false;
        loop {
            let mut conn = self.get().map_err(|e| match e {
                Error::Postgres { message, connection } => Error::Postgres {
                    message: format!("{}: {message}", what()),
                    connection,
                },
                other => other,
            })?;
            let mut result = f(&mut conn);
            if matches!(&result, Err(e) if is_stale_plan(e)) {
                // A statement prepared before another session's setup() changed a column it
                // returns (schema 11 gave the key columns a collation): the server refuses to
                // run it again. Prepared anew, it runs; nothing ran the first time.
                conn.statements.clear();
                result = f(&mut conn);
            }
            match result {
                Ok(v) => {
                    self.put_back(conn);
                    return Ok(v);
                }
                Err(e) => {
                    let dead = is_connection_error(&e, &conn.client);
                    if dead {
                        self.discard(conn);
                        if !retried && !self.is_closed() {
                            retried = true;
                            continue;
                        }
                    } else {
                        self.put_back(conn);
                    }
                    return Err(Error::Postgres {
                        message: format!("{} failed: {}", what(), describe(&e)),
                        connection: dead,
                    });
                }
            }
        }
    }

    /// What the pool holds now and its counters (see [`PoolStats`]).
    pub fn stats(&self) -> PoolStats {
        let mut st = self.lock();
        self.adopt_fork(&mut st);
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PoolStats {
            open: st.open,
            idle: st.idle.len(),
            waiting: st.waiting,
            waits: get(&c.waits),
            waits_timed_out: get(&c.waits_timed_out),
            timeouts: get(&c.timeouts),
            waited: Duration::from_nanos(get(&c.waited_nanos)),
            opened: get(&c.opened),
            dropped: get(&c.dropped),
            reconnects: get(&c.reconnects),
        }
    }

    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let idle: Vec<Conn> = st.idle.drain(..).collect();
        st.open = st.open.saturating_sub(idle.len());
        let forked = st.opener.forked();
        drop(st);
        self.freed.notify_all();
        if forked {
            idle.into_iter().for_each(std::mem::forget);
        } else {
            drop(idle);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Whether `e` is the server refusing a prepared statement whose result columns changed since
/// it was prepared (`cached plan must not change result type`): the statement did not run.
fn is_stale_plan(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED
            && db.message().starts_with("cached plan must not change result type")
    })
}

/// Whether `e` means the connection is gone (as opposed to a statement that failed on a
/// working connection).
fn is_connection_error(e: &tokio_postgres::Error, client: &Client) -> bool {
    if client.is_closed() || e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        // 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot
        // connect now (a restarting server).
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        // The client's own errors: a broken socket is an I/O error.
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// A readable account of a client error: the server's message with its SQLSTATE and detail,
/// or the client's error with its cause.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" ({d})"));
        }
        if db.code().code() == "42P01" && db.message().contains("flg_") {
            s.push_str(" (the checkpointer's tables are missing: call setup() once on this database)");
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::postgres::conninfo;

    /// A pool of `size` whose every connection is taken (none opened: the slots are marked
    /// busy), to a port nothing listens on, so that a caller let in fails at once to connect.
    fn busy_pool(size: usize, pool_timeout: Duration) -> Pool {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let info = conninfo::parse(&format!("host=127.0.0.1 port={port} user=x dbname=x sslmode=disable")).unwrap();
        let options = PgOptions {
            pool_size: size,
            pool_timeout,
            connect_timeout: Duration::from_secs(5),
            ..PgOptions::default()
        };
        let pool = Pool::without_connection(info, &options).unwrap();
        pool.lock().open = size;
        pool
    }

    /// Waits until `n` callers wait on the pool (or 10 s).
    fn until_waiting(pool: &Pool, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.stats().waiting < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(pool.stats().waiting, n);
    }

    #[test]
    fn a_call_finding_every_connection_busy_waits_then_times_out_naming_the_pool() {
        let pool = busy_pool(2, Duration::from_millis(100));
        let e = pool.get().err().expect("no connection is free").to_string();
        assert!(e.contains("pool_size=2") && e.contains("pool_timeout of 0.1 s"), "{e}");
        let s = pool.stats();
        assert_eq!((s.waits, s.waits_timed_out, s.timeouts), (1, 1, 1));
        assert!(s.waited >= Duration::from_millis(100), "{s:?}");
        assert_eq!((s.open, s.idle, s.waiting, s.opened, s.dropped), (2, 0, 0, 0, 0));
    }

    #[test]
    fn a_waiting_caller_is_woken_when_a_connection_is_given_up() {
        // A long pool_timeout: a caller never woken would end its wait by the timeout.
        let pool = busy_pool(1, Duration::from_secs(5));
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| pool.get().err().expect("nothing listens").to_string());
            until_waiting(&pool, 1);
            // What a failed connection attempt does: its slot freed, one waiter woken.
            let mut st = pool.lock();
            st.open -= 1;
            pool.wake_one(st);
            // Woken, the caller takes the free slot and tries to connect.
            let e = waiter.join().unwrap();
            assert!(e.contains("cannot connect"), "{e}");
        });
        let s = pool.stats();
        assert_eq!((s.waits, s.waits_timed_out, s.timeouts), (1, 0, 0));
        assert_eq!((s.open, s.waiting, s.opened), (0, 0, 0));
    }

    #[test]
    fn closing_wakes_every_waiting_caller() {
        let pool = busy_pool(1, Duration::from_secs(5));
        std::thread::scope(|scope| {
            let waiters: Vec<_> = (0..3)
                .map(|_| scope.spawn(|| pool.get().err().expect("closed").to_string()))
                .collect();
            until_waiting(&pool, 3);
            pool.close();
            for w in waiters {
                let e = w.join().unwrap();
                assert!(e.contains("closed"), "{e}");
            }
        });
        let s = pool.stats();
        assert_eq!((s.waits, s.waits_timed_out, s.timeouts, s.waiting), (3, 0, 0, 0));
    }
}
