//! SQLite's C API, called through the library the host process already uses.
//!
//! The shim's store shares a file with the user's own `sqlite3` connection, in the same
//! process. Two copies of SQLite in one process must not open one file: POSIX locks belong to
//! the process, so when one copy closes its descriptor the other's locks vanish, and a copy
//! that believes it holds the last connection folds and deletes the WAL under the other
//! (SQLite's "How To Corrupt An SQLite Database File", section 2.2.1). The crate's bundled
//! SQLite is such a second copy; this module instead looks up the C functions in the library
//! Python's `sqlite3` module is linked to (by a `dlopen` handle), so both sides go through
//! one SQLite and share its locks.
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;
use std::sync::Arc;

use crate::error::{Error, Result};

const SQLITE_OK: c_int = 0;
const SQLITE_BUSY: c_int = 5;
const SQLITE_LOCKED: c_int = 6;
const SQLITE_ROW: c_int = 100;
const SQLITE_DONE: c_int = 101;
const SQLITE_INTEGER: c_int = 1;
const SQLITE_FLOAT: c_int = 2;
const SQLITE_TEXT: c_int = 3;
const SQLITE_BLOB: c_int = 4;
const SQLITE_OPEN_READWRITE: c_int = 0x0000_0002;
const SQLITE_OPEN_CREATE: c_int = 0x0000_0004;
const SQLITE_OPEN_URI: c_int = 0x0000_0040;
const SQLITE_OPEN_NOMUTEX: c_int = 0x0000_8000;
/// `SQLITE_TRANSIENT`: SQLite copies a bound value before the call returns.
const TRANSIENT: isize = -1;
/// `MATERIALIZED` common table expressions need SQLite 3.35.
const MIN_VERSION: c_int = 3_035_000;

type Db = c_void;
type Stmt = c_void;
type Destructor = isize;

#[link(name = "dl")]
extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// The C functions the store uses, resolved once.
#[allow(clippy::struct_field_names)]
pub struct Library {
    open_v2: unsafe extern "C" fn(*const c_char, *mut *mut Db, c_int, *const c_char) -> c_int,
    close_v2: unsafe extern "C" fn(*mut Db) -> c_int,
    busy_timeout: unsafe extern "C" fn(*mut Db, c_int) -> c_int,
    prepare_v2: unsafe extern "C" fn(*mut Db, *const c_char, c_int, *mut *mut Stmt, *mut *const c_char) -> c_int,
    bind_int64: unsafe extern "C" fn(*mut Stmt, c_int, i64) -> c_int,
    bind_double: unsafe extern "C" fn(*mut Stmt, c_int, f64) -> c_int,
    bind_null: unsafe extern "C" fn(*mut Stmt, c_int) -> c_int,
    bind_text: unsafe extern "C" fn(*mut Stmt, c_int, *const c_char, c_int, Destructor) -> c_int,
    bind_blob: unsafe extern "C" fn(*mut Stmt, c_int, *const c_void, c_int, Destructor) -> c_int,
    step: unsafe extern "C" fn(*mut Stmt) -> c_int,
    reset: unsafe extern "C" fn(*mut Stmt) -> c_int,
    clear_bindings: unsafe extern "C" fn(*mut Stmt) -> c_int,
    finalize: unsafe extern "C" fn(*mut Stmt) -> c_int,
    column_type: unsafe extern "C" fn(*mut Stmt, c_int) -> c_int,
    column_blob: unsafe extern "C" fn(*mut Stmt, c_int) -> *const c_void,
    column_text: unsafe extern "C" fn(*mut Stmt, c_int) -> *const u8,
    column_bytes: unsafe extern "C" fn(*mut Stmt, c_int) -> c_int,
    errmsg: unsafe extern "C" fn(*mut Db) -> *const c_char,
    changes: unsafe extern "C" fn(*mut Db) -> c_int,
    get_autocommit: unsafe extern "C" fn(*mut Db) -> c_int,
    libversion_number: unsafe extern "C" fn() -> c_int,
}

macro_rules! load {
    ($handle:expr, $name:literal) => {{
        let name = concat!($name, "\0");
        // SAFETY: `dlsym` with a valid handle and a NUL-terminated name.
        let sym = unsafe { dlsym($handle, name.as_ptr().cast()) };
        if sym.is_null() {
            return Err(Error::Invalid(format!(
                "the SQLite library of this process does not export {}",
                $name
            )));
        }
        // SAFETY: the symbol is SQLite's function of that name, whose C signature the field
        // declares.
        unsafe { std::mem::transmute::<*mut c_void, _>(sym) }
    }};
}

impl Library {
    /// Resolves SQLite's functions through `handle`, a `dlopen` handle of a library that is, or
    /// links to, SQLite (Python's `ctypes.CDLL(_sqlite3.__file__)._handle`).
    // Each field's type is the annotation `load!`'s transmute needs.
    #[allow(clippy::missing_transmute_annotations)]
    pub fn from_handle(handle: usize) -> Result<Arc<Library>> {
        let h = handle as *mut c_void;
        if h.is_null() {
            return Err(Error::Invalid("no SQLite library handle".to_owned()));
        }
        let lib = Library {
            open_v2: load!(h, "sqlite3_open_v2"),
            close_v2: load!(h, "sqlite3_close_v2"),
            busy_timeout: load!(h, "sqlite3_busy_timeout"),
            prepare_v2: load!(h, "sqlite3_prepare_v2"),
            bind_int64: load!(h, "sqlite3_bind_int64"),
            bind_double: load!(h, "sqlite3_bind_double"),
            bind_null: load!(h, "sqlite3_bind_null"),
            bind_text: load!(h, "sqlite3_bind_text"),
            bind_blob: load!(h, "sqlite3_bind_blob"),
            step: load!(h, "sqlite3_step"),
            reset: load!(h, "sqlite3_reset"),
            clear_bindings: load!(h, "sqlite3_clear_bindings"),
            finalize: load!(h, "sqlite3_finalize"),
            column_type: load!(h, "sqlite3_column_type"),
            column_blob: load!(h, "sqlite3_column_blob"),
            column_text: load!(h, "sqlite3_column_text"),
            column_bytes: load!(h, "sqlite3_column_bytes"),
            errmsg: load!(h, "sqlite3_errmsg"),
            changes: load!(h, "sqlite3_changes"),
            get_autocommit: load!(h, "sqlite3_get_autocommit"),
            libversion_number: load!(h, "sqlite3_libversion_number"),
        };
        // SAFETY: a plain getter.
        let version = unsafe { (lib.libversion_number)() };
        if version < MIN_VERSION {
            return Err(Error::Invalid(format!(
                "SQLite {version} is older than 3.35, which the store needs"
            )));
        }
        Ok(Arc::new(lib))
    }

    /// Opens a shared library by name (`"libsqlite3.so.0"`) and resolves SQLite in it.
    pub fn open(name: &str) -> Result<Arc<Library>> {
        let c = CString::new(name).map_err(|_| Error::Invalid(format!("bad library name {name:?}")))?;
        // SAFETY: `dlopen` with a NUL-terminated name; RTLD_NOW = 2.
        let h = unsafe { dlopen(c.as_ptr(), 2) };
        if h.is_null() {
            return Err(Error::Invalid(format!("cannot load {name}")));
        }
        Library::from_handle(h as usize)
    }
}

/// One connection. Not `Sync`: callers keep it behind a lock or in one thread at a time.
pub struct Conn {
    lib: Arc<Library>,
    db: *mut Db,
}

// SAFETY: connections are opened with SQLITE_OPEN_NOMUTEX and used by one thread at a time
// (behind a Mutex, or taken out of a pool), which SQLite's multi-thread mode allows.
unsafe impl Send for Conn {}

impl Conn {
    /// Opens (creating if needed) the database at `path`, read-write.
    pub fn open(lib: &Arc<Library>, path: &str, busy_timeout_ms: c_int) -> Result<Conn> {
        let c = CString::new(path).map_err(|_| Error::Invalid(format!("a path may not hold NUL: {path:?}")))?;
        let mut db = ptr::null_mut();
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
        // SAFETY: valid out-pointer and NUL-terminated path.
        let rc = unsafe { (lib.open_v2)(c.as_ptr(), &mut db, flags, ptr::null()) };
        let conn = Conn {
            lib: Arc::clone(lib),
            db,
        };
        if rc != SQLITE_OK {
            let message = if db.is_null() {
                "out of memory".to_owned()
            } else {
                conn.errmsg()
            };
            return Err(Error::Sqlite {
                message: format!("cannot open {path:?}: {message}"),
                busy: false,
            });
        }
        // SAFETY: an open connection.
        unsafe { (lib.busy_timeout)(db, busy_timeout_ms) };
        Ok(conn)
    }

    fn errmsg(&self) -> String {
        // SAFETY: SQLite returns a NUL-terminated string owned by the connection.
        unsafe { CStr::from_ptr((self.lib.errmsg)(self.db)) }
            .to_string_lossy()
            .into_owned()
    }

    fn error(&self, rc: c_int) -> Error {
        Error::Sqlite {
            message: self.errmsg(),
            busy: matches!(rc & 0xff, SQLITE_BUSY | SQLITE_LOCKED),
        }
    }

    /// Runs statements that return no rows, one after another.
    pub fn exec(&self, sql: &str) -> Result<()> {
        let mut rest = sql.trim();
        while !rest.is_empty() {
            let (mut stmt, tail) = self.prepare_one(rest)?;
            if let Some(s) = stmt.as_mut() {
                while s.step()? {}
            }
            rest = tail.trim();
        }
        Ok(())
    }

    /// Prepares one statement.
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        match self.prepare_one(sql)? {
            (Some(stmt), _) => Ok(stmt),
            (None, _) => Err(Error::Invalid(format!("no statement in {sql:?}"))),
        }
    }

    fn prepare_one<'s>(&self, sql: &'s str) -> Result<(Option<Statement<'_>>, &'s str)> {
        let len = c_int::try_from(sql.len()).map_err(|_| Error::Invalid("statement too long".to_owned()))?;
        let mut stmt = ptr::null_mut();
        let mut tail: *const c_char = ptr::null();
        // SAFETY: `sql` is valid for `len` bytes; SQLite sets `tail` inside it.
        let rc = unsafe { (self.lib.prepare_v2)(self.db, sql.as_ptr().cast(), len, &mut stmt, &mut tail) };
        if rc != SQLITE_OK {
            return Err(self.error(rc));
        }
        let used = if tail.is_null() {
            sql.len()
        } else {
            // SAFETY: `tail` points into `sql`.
            usize::try_from(unsafe { tail.offset_from(sql.as_ptr().cast()) }).unwrap_or(sql.len())
        };
        let rest = sql.get(used..).unwrap_or("");
        if stmt.is_null() {
            return Ok((None, rest)); // only whitespace or a comment
        }
        Ok((Some(Statement { conn: self, stmt }), rest))
    }

    /// Rows changed by the last statement.
    pub fn changes(&self) -> usize {
        // SAFETY: an open connection.
        usize::try_from(unsafe { (self.lib.changes)(self.db) }).unwrap_or(0)
    }

    /// Whether no transaction is open.
    pub fn is_autocommit(&self) -> bool {
        // SAFETY: an open connection.
        unsafe { (self.lib.get_autocommit)(self.db) != 0 }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.db.is_null() {
            // SAFETY: every statement of this connection borrowed it and is finalized.
            unsafe { (self.lib.close_v2)(self.db) };
        }
    }
}

/// A value bound to a parameter.
pub enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A prepared statement; finalized on drop.
pub struct Statement<'c> {
    conn: &'c Conn,
    stmt: *mut Stmt,
}

impl Statement<'_> {
    /// Binds parameters 1..=n, after resetting the statement.
    pub fn bind(&mut self, params: &[Param<'_>]) -> Result<()> {
        let lib = &self.conn.lib;
        // SAFETY: a live statement; values are copied by SQLite (SQLITE_TRANSIENT).
        unsafe {
            (lib.reset)(self.stmt);
            (lib.clear_bindings)(self.stmt);
        }
        for (i, p) in params.iter().enumerate() {
            let idx = c_int::try_from(i + 1).map_err(|_| Error::Invalid("too many parameters".to_owned()))?;
            // SAFETY: as above; text and blob lengths fit their slices.
            let rc = unsafe {
                match p {
                    Param::Null => (lib.bind_null)(self.stmt, idx),
                    Param::Int(v) => (lib.bind_int64)(self.stmt, idx, *v),
                    Param::Real(v) => (lib.bind_double)(self.stmt, idx, *v),
                    Param::Text(s) => (lib.bind_text)(self.stmt, idx, s.as_ptr().cast(), len_of(s.len())?, TRANSIENT),
                    Param::Blob(b) => (lib.bind_blob)(self.stmt, idx, b.as_ptr().cast(), len_of(b.len())?, TRANSIENT),
                }
            };
            if rc != SQLITE_OK {
                return Err(self.conn.error(rc));
            }
        }
        Ok(())
    }

    /// Advances; `true` when a row is ready.
    pub fn step(&mut self) -> Result<bool> {
        // SAFETY: a live statement.
        let rc = unsafe { (self.conn.lib.step)(self.stmt) };
        match rc {
            SQLITE_ROW => Ok(true),
            SQLITE_DONE => Ok(false),
            _ => {
                let err = self.conn.error(rc);
                // SAFETY: a live statement.
                unsafe { (self.conn.lib.reset)(self.stmt) };
                Err(err)
            }
        }
    }

    /// Runs to completion; returns the rows changed.
    pub fn execute(&mut self, params: &[Param<'_>]) -> Result<usize> {
        self.bind(params)?;
        while self.step()? {}
        Ok(self.conn.changes())
    }

    /// Column `i` of the current row as text, or None for NULL.
    pub fn text(&self, i: c_int) -> Option<String> {
        self.bytes(i).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Column `i` of the current row as bytes (a blob, or text as stored), or None for NULL.
    pub fn bytes(&self, i: c_int) -> Option<Vec<u8>> {
        let lib = &self.conn.lib;
        // SAFETY: a statement positioned on a row; the pointer is valid for `n` bytes until the
        // next step, and is copied here.
        unsafe {
            match (lib.column_type)(self.stmt, i) {
                SQLITE_BLOB => {
                    let p = (lib.column_blob)(self.stmt, i);
                    let n = usize::try_from((lib.column_bytes)(self.stmt, i)).unwrap_or(0);
                    Some(if p.is_null() || n == 0 {
                        Vec::new()
                    } else {
                        std::slice::from_raw_parts(p.cast::<u8>(), n).to_vec()
                    })
                }
                SQLITE_TEXT | SQLITE_INTEGER | SQLITE_FLOAT => {
                    let p = (lib.column_text)(self.stmt, i);
                    let n = usize::try_from((lib.column_bytes)(self.stmt, i)).unwrap_or(0);
                    Some(if p.is_null() || n == 0 {
                        Vec::new()
                    } else {
                        std::slice::from_raw_parts(p, n).to_vec()
                    })
                }
                _ => None,
            }
        }
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: finalized once, here.
        unsafe { (self.conn.lib.finalize)(self.stmt) };
    }
}

fn len_of(n: usize) -> Result<c_int> {
    c_int::try_from(n).map_err(|_| Error::Invalid(format!("a value of {n} bytes is too large for SQLite")))
}
