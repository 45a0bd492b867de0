//! The registry database: upstream's SQLite schema, byte for byte, so that
//! a `registry.db` written by the upstream registry is used unchanged.
//!
//! Tables: `config` (name/value settings), `token` (pending e-mail
//! registrations), `cert` (the prefix tree: one row per leaf, with the
//! certificate of the node that owns it, `NULL` when free, or the string
//! `reserved`), and `crl` (revoked serials with their expiry date).
//!
//! Every change goes through [`Db::transaction`], an immediate SQLite
//! transaction: a crash at any point leaves the previous or the next
//! consistent state.
//!
//! The subject serials of the certificates (see
//! [`Tx::smallest_unused_subject_serial`]) are also kept in memory, updated
//! by the changes made through [`Tx`] and read again from the table when
//! another connection has committed or a transaction that changed them
//! was rolled back.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use re6st_proto::prefix::Prefix;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use thiserror::Error;

use crate::alloc::{Leaf, PrefixTree};

/// Upstream's table definitions (as `sqliteCreateTable` writes them; an
/// existing table must have exactly this SQL).
const TABLES: &[(&str, &[&str])] = &[
    ("config", &["name TEXT PRIMARY KEY NOT NULL", "value"]),
    (
        "token",
        &[
            "token TEXT PRIMARY KEY NOT NULL",
            "email TEXT NOT NULL",
            "prefix_len INTEGER NOT NULL",
            "date INTEGER NOT NULL",
        ],
    ),
    (
        "cert",
        &[
            "prefix TEXT PRIMARY KEY NOT NULL",
            "email TEXT",
            "cert TEXT",
        ],
    ),
    (
        "crl",
        &[
            "serial INTEGER PRIMARY KEY NOT NULL",
            "date INTEGER NOT NULL",
        ],
    ),
];

/// Allocation's queries, over free leaves only (`cert IS NULL`: the
/// `cert_free` index).
const LONGEST_FREE_WITHIN: &str = "SELECT prefix FROM cert WHERE cert IS NULL
   AND substr(prefix, 1, ?1) = ?2 AND length(prefix) <= ?3
 ORDER BY length(prefix) DESC, prefix LIMIT 1";
const LONGEST_FREE_LEN_BELOW: &str =
    "SELECT max(length(prefix)) FROM cert WHERE cert IS NULL AND length(prefix) < ?";
const FREE_LEAVES_OF_LEN: &str =
    "SELECT prefix FROM cert WHERE cert IS NULL AND length(prefix) = ? ORDER BY prefix";

/// The `cert` value that marks a leaf as never allocatable.
pub const RESERVED: &str = "reserved";

#[derive(Debug, Error)]
pub enum DbError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the database directory: {0}")]
    Dir(#[from] std::io::Error),
    #[error("table {0:?} already exists with an unexpected schema")]
    Schema(String),
    #[error("database holds an invalid prefix {0:?}")]
    BadPrefix(String),
}

/// The SQL upstream uses to create table `name`.
pub fn create_sql(name: &str, columns: &[&str]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| format!("\n  {c}")).collect();
    format!("CREATE TABLE {name} ({})", cols.join(","))
}

pub struct Db {
    conn: Connection,
    /// `None`: to be read from the table at next use.
    subject_serials: Option<SubjectSerials>,
}

/// The subject serial of each certificate in the `cert` table, by prefix.
#[derive(Debug, Default)]
struct SubjectSerials {
    /// `PRAGMA data_version` when read: it changes when another
    /// connection (e.g. an operator's `sqlite3` shell) commits.
    data_version: i64,
    by_prefix: HashMap<Prefix, u64>,
    /// How many certificates carry each serial (an upstream database may
    /// hold duplicates).
    used: BTreeMap<u64, u32>,
}

impl SubjectSerials {
    fn insert(&mut self, prefix: Prefix, serial: Option<u64>) {
        self.remove(&prefix);
        if let Some(s) = serial {
            self.by_prefix.insert(prefix, s);
            *self.used.entry(s).or_default() += 1;
        }
    }

    fn remove(&mut self, prefix: &Prefix) -> Option<u64> {
        let s = self.by_prefix.remove(prefix)?;
        if let Some(n) = self.used.get_mut(&s) {
            *n -= 1;
            if *n == 0 {
                self.used.remove(&s);
            }
        }
        Some(s)
    }

    fn smallest_unused(&self) -> u64 {
        crate::certs::smallest_unused(self.used.keys().copied())
    }
}

/// The subject serial of a stored certificate, if it has one.
fn subject_serial_of(pem: &str) -> Option<u64> {
    openssl::x509::X509::from_pem(pem.as_bytes())
        .ok()
        .and_then(|c| re6st_proto::cert::subject_serial(&c).ok())
}

/// A row of the `token` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    pub email: String,
    pub prefix_len: u8,
    pub date: i64,
}

/// An allocated leaf of the `cert` table (`cert` not `NULL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    pub prefix: Prefix,
    pub email: Option<String>,
    /// A PEM certificate, or [`RESERVED`].
    pub cert: String,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and checks or
    /// creates upstream's schema.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Self::init(Connection::open(path)?)
    }

    /// An empty database in memory (tests).
    pub fn memory() -> Result<Db, DbError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Db, DbError> {
        // Another process (e.g. an operator's sqlite3 shell) may hold a
        // lock for a moment.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Write-ahead log: one fsync per transaction instead of several,
        // still durable (synchronous=FULL) and consistent after a crash.
        // Upstream's registry opens such a database just as well.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let mut db = Db {
            conn,
            subject_serials: None,
        };
        db.transaction(|tx| {
            for (name, columns) in TABLES {
                let wanted = create_sql(name, columns);
                let existing: Option<String> = tx
                    .conn
                    .query_row(
                        "SELECT sql FROM sqlite_master WHERE type='table' AND name=?",
                        [name],
                        |r| r.get(0),
                    )
                    .optional()?;
                match existing {
                    Some(sql) if sql == wanted => {}
                    Some(_) => return Err(DbError::Schema((*name).to_owned())),
                    None => {
                        tx.conn.execute(&wanted, [])?;
                    }
                }
            }
            // Free leaves are few (about one per level of the tree): an
            // index of them alone spares allocation a scan of every
            // certificate with the lock held. Not in upstream's schema:
            // its registry checks only the tables' SQL (sqliteCreateTable),
            // so it keeps working on this file, SQLite keeping the index
            // up to date under its writes too.
            tx.conn.execute(
                "CREATE INDEX IF NOT EXISTS cert_free ON cert(prefix) WHERE cert IS NULL",
                [],
            )?;
            // The tree starts as one free leaf: the whole network.
            let empty: bool =
                tx.conn
                    .query_row("SELECT NOT EXISTS (SELECT 1 FROM cert)", [], |r| r.get(0))?;
            if empty {
                tx.conn
                    .execute("INSERT INTO cert VALUES ('', NULL, NULL)", [])?;
            }
            Ok(())
        })?;
        Ok(db)
    }

    /// Runs `f` in an immediate transaction, committed when `f` succeeds
    /// and rolled back otherwise.
    pub fn transaction<T, E: From<rusqlite::Error>>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let t = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut tx = Tx {
            conn: &t,
            subject_serials: &mut self.subject_serials,
            serials_changed: false,
        };
        let r = f(&mut tx);
        let serials_changed = tx.serials_changed;
        // Dropped uncommitted, `t` rolls back.
        let r = r.and_then(|r| t.commit().map(|()| r).map_err(E::from));
        if r.is_err() && serials_changed {
            // Rolled back: the index may hold what never was.
            self.subject_serials = None;
        }
        r
    }
}

/// Queries and changes inside one transaction.
pub struct Tx<'a> {
    conn: &'a Connection,
    subject_serials: &'a mut Option<SubjectSerials>,
    /// Whether `subject_serials` changed (to be dropped if rolled back).
    serials_changed: bool,
}

fn parse_prefix(s: String) -> Result<Prefix, DbError> {
    s.parse().map_err(|_| DbError::BadPrefix(s))
}

/// A config value as bytes, whether SQLite stored it as text or blob.
fn value_bytes(v: ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
        _ => None,
    }
}

/// A TEXT or BLOB column as text (upstream stores PEM as BLOB).
fn text(v: ValueRef<'_>) -> String {
    value_bytes(v).map_or_else(String::new, |b| String::from_utf8_lossy(&b).into_owned())
}

impl Tx<'_> {
    // --- config ---

    fn config_value(&self, name: &str) -> Result<Option<Value>, DbError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM config WHERE name=?", [name], |r| {
                r.get::<_, Value>(0)
            })
            .optional()?)
    }

    /// A config value as bytes; `None` when absent or NULL.
    pub fn config_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM config WHERE name=?", [name], |r| {
                Ok(value_bytes(r.get_ref(0)?))
            })
            .optional()?
            .flatten())
    }

    pub fn config_text(&self, name: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .config_bytes(name)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    pub fn config_int(&self, name: &str) -> Result<Option<i64>, DbError> {
        Ok(match self.config_value(name)? {
            Some(Value::Integer(i)) => Some(i),
            Some(Value::Text(t)) => t.trim().parse().ok(),
            _ => None,
        })
    }

    /// Whether `name` is present with a non-NULL value.
    pub fn config_has(&self, name: &str) -> Result<bool, DbError> {
        Ok(!matches!(
            self.config_value(name)?,
            None | Some(Value::Null)
        ))
    }

    pub fn set_config(&self, name: &str, value: impl Into<Value>) -> Result<(), DbError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO config VALUES (?, ?)",
            params![name, value.into()],
        )?;
        Ok(())
    }

    pub fn delete_config(&self, name: &str) -> Result<(), DbError> {
        self.conn
            .execute("DELETE FROM config WHERE name=?", [name])?;
        Ok(())
    }

    // --- tokens ---

    /// Inserts a token; `false` when it already exists.
    pub fn insert_token(&self, t: &Token) -> Result<bool, DbError> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO token VALUES (?,?,?,?)",
            params![t.token, t.email, t.prefix_len, t.date],
        )?;
        Ok(n == 1)
    }

    pub fn token(&self, token: &str) -> Result<Option<Token>, DbError> {
        Ok(self
            .conn
            .query_row(
                "SELECT token, email, prefix_len, date FROM token WHERE token=?",
                [token],
                |r| {
                    Ok(Token {
                        token: r.get(0)?,
                        email: r.get(1)?,
                        prefix_len: r.get(2)?,
                        date: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn delete_token(&self, token: &str) -> Result<bool, DbError> {
        Ok(self
            .conn
            .execute("DELETE FROM token WHERE token=?", [token])?
            == 1)
    }

    /// Every (token, date).
    pub fn token_dates(&self) -> Result<Vec<(String, i64)>, DbError> {
        let mut st = self.conn.prepare("SELECT token, date FROM token")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // --- certificates ---

    /// The certificate of leaf `prefix`, if allocated.
    pub fn cert(&self, prefix: &Prefix) -> Result<Option<String>, DbError> {
        Ok(self
            .conn
            .query_row(
                "SELECT cert FROM cert WHERE prefix=? AND cert IS NOT NULL",
                [prefix.to_string()],
                |r| Ok(text(r.get_ref(0)?)),
            )
            .optional()?)
    }

    /// Stores a certificate, as a BLOB like upstream does;
    /// `subject_serial` must be its subject's serialNumber (given rather
    /// than parsed again from `pem`: that parse cost as much as the
    /// signature).
    pub fn set_cert(
        &mut self,
        prefix: &Prefix,
        pem: &str,
        subject_serial: Option<u64>,
    ) -> Result<(), DbError> {
        let n = self.conn.execute(
            "UPDATE cert SET cert=? WHERE prefix=?",
            params![pem.as_bytes(), prefix.to_string()],
        )?;
        if n > 0 {
            if let Some(index) = self.serials_mut() {
                index.insert(*prefix, subject_serial);
            }
        }
        Ok(())
    }

    pub fn set_email(&self, prefix: &Prefix, email: Option<&str>) -> Result<(), DbError> {
        self.conn.execute(
            "UPDATE cert SET email=? WHERE prefix=?",
            params![email, prefix.to_string()],
        )?;
        Ok(())
    }

    /// Frees a leaf (its prefix is merged later).
    pub fn clear_cert(&mut self, prefix: &Prefix) -> Result<(), DbError> {
        self.conn.execute(
            "UPDATE cert SET email=NULL, cert=NULL WHERE prefix=?",
            [prefix.to_string()],
        )?;
        if let Some(index) = self.serials_mut() {
            index.remove(prefix);
        }
        Ok(())
    }

    /// Leaves that hold a certificate (not the reserved ones).
    pub fn cert_count(&self) -> Result<usize, DbError> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM cert WHERE cert IS NOT NULL AND cert != ?",
            [RESERVED],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Runs `f` in a savepoint: its changes are kept when it succeeds and
    /// undone otherwise, the rest of the transaction going on. The outer
    /// error is the savepoint's own (the transaction must then fail).
    pub fn savepoint<T, E: From<rusqlite::Error>>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<Result<T, E>, DbError> {
        self.conn.execute_batch("SAVEPOINT one")?;
        let changed_before = std::mem::take(&mut self.serials_changed);
        let r = f(self);
        if r.is_ok() {
            self.conn.execute_batch("RELEASE one")?;
        } else {
            self.conn.execute_batch("ROLLBACK TO one; RELEASE one")?;
            if self.serials_changed {
                *self.subject_serials = None;
            }
        }
        self.serials_changed |= changed_before;
        Ok(r)
    }

    /// The in-memory index of subject serials, when read, marked as
    /// changed by this transaction.
    fn serials_mut(&mut self) -> Option<&mut SubjectSerials> {
        self.serials_changed = true;
        self.subject_serials.as_mut()
    }

    /// The smallest subject serial that no certificate in the table
    /// carries (upstream's rule: these small numbers are used for IPv4
    /// allocation). From the in-memory index: reading and parsing every
    /// certificate at each issuance made issuance quadratic.
    pub fn smallest_unused_subject_serial(&mut self) -> Result<u64, DbError> {
        let data_version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if let Some(index) = self
            .subject_serials
            .as_ref()
            .filter(|i| i.data_version == data_version)
        {
            return Ok(index.smallest_unused());
        }
        let mut index = SubjectSerials {
            data_version,
            ..SubjectSerials::default()
        };
        for row in self.cert_rows()? {
            index.insert(row.prefix, subject_serial_of(&row.cert));
        }
        let smallest = index.smallest_unused();
        // Read inside this transaction: it holds its uncommitted changes.
        self.serials_changed = true;
        *self.subject_serials = Some(index);
        Ok(smallest)
    }

    /// Every allocated leaf (certificates and reserved ones).
    pub fn cert_rows(&self) -> Result<Vec<CertRow>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT prefix, email, cert FROM cert WHERE cert IS NOT NULL")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get_ref(1)
                    .map(|v| value_bytes(v).map(|b| String::from_utf8_lossy(&b).into_owned()))?,
                text(r.get_ref(2)?),
            ))
        })?;
        let mut out = vec![];
        for row in rows {
            let (prefix, email, cert) = row?;
            out.push(CertRow {
                prefix: parse_prefix(prefix)?,
                email,
                cert,
            });
        }
        Ok(out)
    }

    /// The certificate of the first leaf registered with `email`.
    pub fn cert_by_email(&self, email: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn
            .query_row(
                "SELECT cert FROM cert WHERE email=? AND cert IS NOT NULL",
                [email],
                |r| Ok(text(r.get_ref(0)?)),
            )
            .optional()?)
    }

    // --- revocation ---

    pub fn crl_serials(&self) -> Result<Vec<i64>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT serial FROM crl ORDER BY serial")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn is_revoked(&self, serial: i64) -> Result<bool, DbError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM crl WHERE serial=?)",
            [serial],
            |r| r.get(0),
        )?)
    }

    /// Adds a revoked serial; `false` when it was already listed.
    pub fn revoke(&self, serial: i64, not_after: i64) -> Result<bool, DbError> {
        Ok(self.conn.execute(
            "INSERT OR IGNORE INTO crl VALUES (?,?)",
            params![serial, not_after],
        )? == 1)
    }

    /// Removes revocations of certificates expired before `now`; returns
    /// how many.
    pub fn purge_crl(&self, now: i64) -> Result<usize, DbError> {
        Ok(self.conn.execute("DELETE FROM crl WHERE date < ?", [now])?)
    }
}

impl PrefixTree for Tx<'_> {
    type Error = DbError;

    fn longest_free_within(
        &mut self,
        community: &Prefix,
        max_len: u8,
    ) -> Result<Option<Prefix>, DbError> {
        let c = community.to_string();
        self.conn
            .query_row(LONGEST_FREE_WITHIN, params![c.len(), c, max_len], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .map(parse_prefix)
            .transpose()
    }

    fn leaf_covering(&mut self, p: &Prefix) -> Result<Option<(Prefix, Leaf)>, DbError> {
        self.conn
            .query_row(
                "SELECT prefix, cert IS NULL FROM cert
                 WHERE substr(?1, 1, length(prefix)) = prefix
                 ORDER BY length(prefix) LIMIT 1",
                [p.to_string()],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)),
            )
            .optional()?
            .map(|(prefix, free)| {
                Ok((
                    parse_prefix(prefix)?,
                    if free { Leaf::Free } else { Leaf::Taken },
                ))
            })
            .transpose()
    }

    fn rename(&mut self, from: &Prefix, to: &Prefix) -> Result<(), DbError> {
        self.conn.execute(
            "UPDATE cert SET prefix=? WHERE prefix=?",
            [to.to_string(), from.to_string()],
        )?;
        // Only free leaves are renamed; a certificate would move along.
        if let Some(index) = self.serials_mut() {
            if let Some(s) = index.remove(from) {
                index.insert(*to, Some(s));
            }
        }
        Ok(())
    }

    fn insert_free(&mut self, p: &Prefix) -> Result<(), DbError> {
        self.conn
            .execute("INSERT INTO cert VALUES (?, NULL, NULL)", [p.to_string()])?;
        Ok(())
    }

    fn delete(&mut self, p: &Prefix) -> Result<(), DbError> {
        self.conn
            .execute("DELETE FROM cert WHERE prefix=?", [p.to_string()])?;
        if let Some(index) = self.serials_mut() {
            index.remove(p);
        }
        Ok(())
    }

    fn reserve(&mut self, p: &Prefix) -> Result<(), DbError> {
        self.conn.execute(
            "UPDATE cert SET cert=? WHERE prefix=?",
            params![RESERVED, p.to_string()],
        )?;
        if let Some(index) = self.serials_mut() {
            index.remove(p);
        }
        Ok(())
    }

    fn longest_free_len_below(&mut self, below: u16) -> Result<Option<u8>, DbError> {
        Ok(self.conn.query_row(LONGEST_FREE_LEN_BELOW, [below], |r| {
            r.get::<_, Option<u8>>(0)
        })?)
    }

    fn free_leaves_of_len(&mut self, len: u8) -> Result<Vec<Prefix>, DbError> {
        let mut st = self.conn.prepare(FREE_LEAVES_OF_LEN)?;
        let rows = st.query_map([len], |r| r.get::<_, String>(0))?;
        let mut out = vec![];
        for r in rows {
            out.push(parse_prefix(r?)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::{allocate, merge, MemoryTree};

    #[test]
    fn schema_sql_matches_upstream_layout() {
        assert_eq!(
            create_sql("config", TABLES[0].1),
            "CREATE TABLE config (\n  name TEXT PRIMARY KEY NOT NULL,\n  value)"
        );
    }

    /// Allocation reads the free leaves through their index, not every
    /// certificate (a scan that took a third of the time under the lock
    /// after a few thousand certificates).
    #[test]
    fn allocation_queries_use_the_free_leaf_index() {
        let db = Db::memory().unwrap();
        let plan = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> String {
            let mut st = db
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows = st.query_map(args, |r| r.get::<_, String>(3)).unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let c: &dyn rusqlite::ToSql = &"0";
        for (sql, args) in [
            (
                LONGEST_FREE_WITHIN,
                vec![&1 as &dyn rusqlite::ToSql, c, &16],
            ),
            (LONGEST_FREE_LEN_BELOW, vec![&16 as &dyn rusqlite::ToSql]),
            (FREE_LEAVES_OF_LEN, vec![&16 as &dyn rusqlite::ToSql]),
        ] {
            let p = plan(sql, &args);
            assert!(p.contains("USING INDEX cert_free"), "{sql}: {p}");
        }
    }

    #[test]
    fn rejects_foreign_schema() {
        let dir = std::env::temp_dir().join(format!("re6st-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("foreign.db");
        let _ = std::fs::remove_file(&path);
        Connection::open(&path)
            .unwrap()
            .execute("CREATE TABLE token (token TEXT)", [])
            .unwrap();
        assert!(matches!(Db::open(&path), Err(DbError::Schema(t)) if t == "token"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_values_round_trip() {
        let mut db = Db::memory().unwrap();
        db.transaction(|tx| {
            tx.set_config("serial", 7i64)?;
            tx.set_config("version", vec![0u8, 1, 2])?;
            tx.set_config("prefix", "0101".to_owned())?;
            assert_eq!(tx.config_int("serial")?, Some(7));
            assert_eq!(tx.config_bytes("version")?, Some(vec![0, 1, 2]));
            assert_eq!(tx.config_text("prefix")?.as_deref(), Some("0101"));
            assert_eq!(tx.config_text("nothing")?, None);
            tx.delete_config("serial")?;
            assert_eq!(tx.config_int("serial")?, None);
            Ok::<_, DbError>(())
        })
        .unwrap();
    }

    #[test]
    fn failed_transaction_changes_nothing() {
        let mut db = Db::memory().unwrap();
        let r: Result<(), DbError> = db.transaction(|tx| {
            tx.set_config("serial", 1i64)?;
            Err(DbError::BadPrefix("x".into()))
        });
        assert!(r.is_err());
        let v = db.transaction(|tx| tx.config_int("serial")).unwrap();
        assert_eq!(v, None);
    }

    /// The SQL tree behaves like the in-memory reference tree.
    #[test]
    fn sql_tree_matches_memory_tree() {
        let mut db = Db::memory().unwrap();
        let mut mem = MemoryTree::default();
        let communities: Vec<Prefix> = ["0", "10", "11"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let mut live = vec![];
        for i in 0..40u8 {
            let c = &communities[usize::from(i % 3)];
            let len = 1 + i % 5;
            let a = db
                .transaction(|tx| {
                    let a =
                        allocate(tx, 120, c, len).map_err(|e| DbError::BadPrefix(e.to_string()))?;
                    tx.set_cert(&a, "pem", None)?;
                    Ok::<_, DbError>(a)
                })
                .ok();
            let b = allocate(&mut mem, 120, c, len).ok();
            assert_eq!(a, b);
            if let Some(b) = b {
                mem.take(&b);
                live.push(b);
            }
            if i % 4 == 3 {
                let freed = live.remove(0);
                mem.release(&freed);
                merge(&mut mem).unwrap();
                db.transaction(|tx| {
                    tx.clear_cert(&freed)?;
                    merge(tx)
                })
                .unwrap();
            }
        }
        let rows: Vec<Prefix> = db
            .transaction(|tx| tx.cert_rows())
            .unwrap()
            .into_iter()
            .map(|r| r.prefix)
            .collect();
        let taken: Vec<Prefix> = mem
            .leaves
            .iter()
            .filter(|(_, l)| **l == Leaf::Taken)
            .map(|(p, _)| *p)
            .collect();
        let mut rows_sorted = rows.clone();
        rows_sorted.sort();
        assert_eq!(rows_sorted, taken);
    }

    /// The in-memory subject serials follow this connection's writes, and
    /// are read again from the table after a rollback or another
    /// connection's commit. The stored "pem" placeholders carry no
    /// serial: a value only the index can know shows it was not re-read.
    #[test]
    fn subject_serials_follow_every_change() {
        let dir = std::env::temp_dir().join(format!("re6st-db-serials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("registry.db");
        let _ = std::fs::remove_file(&path);
        let mut db = Db::open(&path).unwrap();
        let p = |s: &str| -> Prefix { s.parse().unwrap() };
        let smallest = |db: &mut Db| {
            db.transaction(|tx| tx.smallest_unused_subject_serial())
                .unwrap()
        };
        assert_eq!(smallest(&mut db), 0);
        let set = |db: &mut Db| {
            db.transaction(|tx| {
                tx.set_cert(&p("00"), "pem", Some(0))?;
                tx.set_cert(&p("01"), "pem", Some(1))
            })
            .unwrap()
        };
        db.transaction(|tx| {
            for leaf in ["00", "01", "10"] {
                tx.insert_free(&p(leaf))?;
            }
            tx.delete(&p(""))
        })
        .unwrap();
        set(&mut db);
        assert_eq!(smallest(&mut db), 2);
        db.transaction(|tx| tx.clear_cert(&p("00"))).unwrap();
        assert_eq!(smallest(&mut db), 0);
        db.transaction(|tx| tx.set_cert(&p("00"), "pem", Some(0)))
            .unwrap();
        assert_eq!(smallest(&mut db), 2);
        // Rolled back: read again from the table.
        let r: Result<(), DbError> = db.transaction(|tx| {
            tx.set_cert(&p("10"), "pem", Some(2))?;
            assert_eq!(tx.smallest_unused_subject_serial()?, 3);
            Err(DbError::BadPrefix("rollback".into()))
        });
        assert!(r.is_err());
        assert_eq!(smallest(&mut db), 0);
        set(&mut db);
        assert_eq!(smallest(&mut db), 2);
        // Another connection (an operator's shell) commits: read again.
        let other = Connection::open(&path).unwrap();
        other
            .execute("UPDATE cert SET email='x' WHERE prefix='10'", [])
            .unwrap();
        drop(other);
        assert_eq!(smallest(&mut db), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokens_and_crl() {
        let mut db = Db::memory().unwrap();
        db.transaction(|tx| {
            let t = Token {
                token: "abcdefgh".into(),
                email: "a@b".into(),
                prefix_len: 16,
                date: 100,
            };
            assert!(tx.insert_token(&t)?);
            assert!(!tx.insert_token(&t)?);
            assert_eq!(tx.token("abcdefgh")?, Some(t));
            assert!(tx.delete_token("abcdefgh")?);
            assert_eq!(tx.token("abcdefgh")?, None);
            assert!(tx.revoke(5, 1000)?);
            assert!(!tx.revoke(5, 1000)?);
            assert!(tx.revoke(3, 10)?);
            assert_eq!(tx.crl_serials()?, vec![3, 5]);
            assert!(tx.is_revoked(3)?);
            assert_eq!(tx.purge_crl(500)?, 1);
            assert_eq!(tx.crl_serials()?, vec![5]);
            Ok::<_, DbError>(())
        })
        .unwrap();
    }
}
