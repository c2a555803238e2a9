use super::*;
use crate::error::Error;

fn cp(thread: &str, id: &str, parent: Option<&str>, run: &str, versions: &[(&str, &str)]) -> NewCheckpoint {
    NewCheckpoint {
        thread_id: thread.into(),
        checkpoint_ns: String::new(),
        checkpoint_id: id.into(),
        parent_checkpoint_id: parent.map(Into::into),
        type_tag: "msgpack".into(),
        checkpoint: id.as_bytes().to_vec(),
        metadata_json: format!(r#"{{"run_id": "{run}", "step": {}, "source": "loop"}}"#, id.len()),
        run_id: Some(run.into()),
        channel_versions: versions.iter().map(|(c, v)| ((*c).into(), (*v).into())).collect(),
        blobs: versions
            .iter()
            .map(|(c, v)| Blob {
                channel: (*c).into(),
                version: (*v).into(),
                type_tag: "bytes".into(),
                data: format!("{c}@{v}").into_bytes(),
                delta_base: None,
                keep_existing: false,
            })
            .collect(),
        refs: Vec::new(),
    }
}

fn all(store: &Store, thread: &str) -> Vec<StoredCheckpoint> {
    store
        .list(&ListQuery {
            thread_id: Some(thread.into()),
            ..ListQuery::default()
        })
        .unwrap()
}

#[test]
fn put_and_list_newest_first_with_blobs_and_sorted_writes() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    store.put(cp("t", "1", None, "r1", &[("a", "1")])).unwrap();
    let mut second = cp("t", "2", Some("1"), "r1", &[("a", "1"), ("b", "1")]);
    second.blobs.retain(|b| b.channel == "b"); // `a` did not change: its blob is not rewritten
    store.put(second).unwrap();
    store
        .put_writes(NewWrites {
            thread_id: "t".into(),
            checkpoint_ns: String::new(),
            checkpoint_id: "2".into(),
            task_id: "task-b".into(),
            task_path: "~b".into(),
            writes: vec![NewWrite {
                idx: 0,
                channel: "x".into(),
                type_tag: "t".into(),
                data: b"late".to_vec(),
            }],
        })
        .unwrap();
    store
        .put_writes(NewWrites {
            thread_id: "t".into(),
            checkpoint_ns: String::new(),
            checkpoint_id: "2".into(),
            task_id: "task-a".into(),
            task_path: "~a".into(),
            writes: vec![NewWrite {
                idx: 0,
                channel: "y".into(),
                type_tag: "t".into(),
                data: b"early".to_vec(),
            }],
        })
        .unwrap();
    let got = all(&store, "t");
    assert_eq!(
        got.iter().map(|c| c.checkpoint_id.as_str()).collect::<Vec<_>>(),
        ["2", "1"]
    );
    let blobs: Vec<_> = got[0]
        .blobs
        .iter()
        .map(|b| String::from_utf8(b.segments[0].1.clone()).unwrap())
        .collect();
    assert_eq!(blobs, ["a@1", "b@1"]);
    assert_eq!(
        got[0].writes.iter().map(|w| w.channel.as_str()).collect::<Vec<_>>(),
        ["y", "x"]
    );
    assert_eq!(got[0].parent_checkpoint_id.as_deref(), Some("1"));
}

#[test]
fn regular_writes_are_kept_and_special_writes_replaced() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    store.put(cp("t", "1", None, "r", &[])).unwrap();
    let writes = |idx: i64, data: &[u8]| NewWrites {
        thread_id: "t".into(),
        checkpoint_ns: String::new(),
        checkpoint_id: "1".into(),
        task_id: "task".into(),
        task_path: String::new(),
        writes: vec![NewWrite {
            idx,
            channel: "c".into(),
            type_tag: "t".into(),
            data: data.to_vec(),
        }],
    };
    store.put_writes(writes(0, b"first")).unwrap();
    store.put_writes(writes(0, b"second")).unwrap();
    store.put_writes(writes(-1, b"error-1")).unwrap();
    store.put_writes(writes(-1, b"error-2")).unwrap();
    let got = &all(&store, "t")[0].writes;
    assert_eq!(
        got.iter().map(|w| w.data.as_slice()).collect::<Vec<_>>(),
        [b"error-2".as_slice(), b"first"]
    );
}

#[test]
fn filter_binds_keys_and_compares_like_python() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    store.put(cp("t", "1", None, "r", &[])).unwrap();
    let q = |key: &str, value: MetaValue| ListQuery {
        filter: vec![MetaFilter { key: key.into(), value }],
        ..ListQuery::default()
    };
    assert_eq!(
        store.list(&q("source", MetaValue::Text("loop".into()))).unwrap().len(),
        1
    );
    assert_eq!(store.list(&q("step", MetaValue::Float(1.0))).unwrap().len(), 1);
    assert_eq!(store.list(&q("step", MetaValue::Text("1".into()))).unwrap().len(), 0);
    assert_eq!(store.list(&q("missing", MetaValue::Null)).unwrap().len(), 1);
    assert_eq!(
        store
            .list(&q("source') OR 1=1 --", MetaValue::Text("x".into())))
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn prune_keep_latest_keeps_blobs_the_latest_needs() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    store.put(cp("t", "1", None, "r", &[("a", "1")])).unwrap();
    let mut second = cp("t", "2", Some("1"), "r", &[("a", "1"), ("b", "2")]);
    second.blobs.retain(|b| b.channel == "b");
    store.put(second).unwrap();
    store
        .put(cp("t", "3", Some("2"), "r", &[("a", "1"), ("b", "3")]))
        .unwrap();
    store.prune(vec!["t".into()], PruneStrategy::KeepLatest).unwrap();
    let got = all(&store, "t");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].blobs.len(), 2);
    let n: i64 = store
        .raw(|conn| Ok(conn.query_row("SELECT count(*) FROM flg_blobs", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(n, 2, "the blob of b@2 is no longer needed");
}

#[test]
fn delete_for_runs_copy_and_delete_thread() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    store.put(cp("t", "1", None, "r1", &[("a", "1")])).unwrap();
    store.put(cp("t", "2", Some("1"), "r2", &[("a", "2")])).unwrap();
    store.copy_thread("t", "u").unwrap();
    store.delete_for_runs(vec!["r1".into()]).unwrap();
    assert_eq!(all(&store, "t").len(), 1);
    assert_eq!(all(&store, "u").len(), 1);
    store.delete_thread("u").unwrap();
    assert!(all(&store, "u").is_empty());
    assert_eq!(store.thread_ids().unwrap(), ["t"]);
}

#[test]
fn concurrent_puts_from_many_threads_all_land() {
    let dir = std::env::temp_dir().join(format!("flg-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("concurrent.db");
    let _ = std::fs::remove_file(&path);
    let store = std::sync::Arc::new(Store::open(path.to_str().unwrap(), &StoreOptions::default()).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..50 {
                    store
                        .put(cp(
                            &format!("t{t}"),
                            &format!("{i:04}"),
                            None,
                            "r",
                            &[("a", &i.to_string())],
                        ))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for t in 0..8 {
        assert_eq!(all(&store, &format!("t{t}")).len(), 50);
    }
    store.close();
    assert!(matches!(store.put(cp("x", "1", None, "r", &[])), Err(Error::Closed(_))));
    assert!(matches!(store.list(&ListQuery::default()), Err(Error::Closed(_))));
}

#[test]
fn refuses_files_that_are_not_ours_without_touching_them() {
    let dir = std::env::temp_dir().join(format!("flg-test-foreign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.db");
    std::fs::write(
        &junk,
        b"this is not a database, just some text that is long enough........",
    )
    .unwrap();
    let before = std::fs::read(&junk).unwrap();
    assert!(matches!(
        Store::open(junk.to_str().unwrap(), &StoreOptions::default()),
        Err(Error::NotADatabase(_))
    ));
    assert_eq!(std::fs::read(&junk).unwrap(), before);

    let foreign = dir.join("foreign.db");
    let _ = std::fs::remove_file(&foreign);
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE users (id INTEGER)")
        .unwrap();
    let before = std::fs::read(&foreign).unwrap();
    let err = Store::open(foreign.to_str().unwrap(), &StoreOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::ForeignSchema(ref m) if m.contains("users")),
        "{err}"
    );
    assert_eq!(std::fs::read(&foreign).unwrap(), before);
}

fn delta(version: &str, base: &str, data: &str) -> Blob {
    Blob {
        channel: "m".into(),
        version: version.into(),
        type_tag: "t".into(),
        data: data.as_bytes().to_vec(),
        delta_base: Some(base.into()),
        keep_existing: false,
    }
}

fn segments(store: &Store, thread: &str, id: &str) -> Vec<String> {
    let q = ListQuery {
        thread_id: Some(thread.into()),
        checkpoint_id: Some(id.into()),
        ..ListQuery::default()
    };
    let got = store.list(&q).unwrap();
    let m = got[0].blobs.iter().find(|b| b.channel == "m").unwrap();
    m.segments
        .iter()
        .map(|s| String::from_utf8(s.1.clone()).unwrap())
        .collect()
}

#[test]
fn delta_chains_read_back_oldest_first_and_survive_prune() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    store.put(cp("t", "1", None, "r", &[("m", "1")])).unwrap();
    let mut second = cp("t", "2", Some("1"), "r", &[("m", "2")]);
    second.blobs = vec![delta("2", "1", "+b")];
    store.put(second).unwrap();
    let mut third = cp("t", "3", Some("2"), "r", &[("m", "3")]);
    third.blobs = vec![delta("3", "2", "+c")];
    store.put(third).unwrap();
    assert_eq!(segments(&store, "t", "3"), ["m@1", "+b", "+c"]);
    assert_eq!(segments(&store, "t", "2"), ["m@1", "+b"]);
    store.prune(vec!["t".into()], PruneStrategy::KeepLatest).unwrap();
    assert_eq!(all(&store, "t").len(), 1);
    assert_eq!(
        segments(&store, "t", "3"),
        ["m@1", "+b", "+c"],
        "the chain's bases are kept"
    );
    store.copy_thread("t", "u").unwrap();
    assert_eq!(segments(&store, "u", "3"), ["m@1", "+b", "+c"]);
}

#[test]
fn a_delta_over_a_missing_base_is_refused_and_nothing_is_written() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    let mut orphan = cp("t", "1", None, "r", &[("m", "2")]);
    orphan.blobs = vec![delta("2", "1", "+b")];
    assert!(matches!(store.put(orphan), Err(Error::DeltaBaseMissing(_))));
    assert!(all(&store, "t").is_empty());
}

#[test]
fn a_put_referring_to_a_deleted_blob_is_refused_alone_in_its_batch() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    for thread in ["t", "u"] {
        store.put(cp(thread, "1", None, "r", &[("a", "1")])).unwrap();
    }
    store.delete_thread("t").unwrap();
    // The next checkpoint changes `b` only, and refers to the blob of `a` its parent stored.
    let next = |thread: &str| {
        let mut c = cp(thread, "2", Some("1"), "r", &[("a", "1"), ("b", "2")]);
        c.blobs.retain(|b| b.channel == "b");
        c.refs = vec![("a".into(), "1".into())];
        c
    };
    let err = store.put(next("t")).unwrap_err();
    assert!(matches!(err, Error::DeltaBaseMissing(_)), "{err:?}");
    assert!(
        err.to_string().contains("\"a\""),
        "the message names the channel: {err}"
    );
    assert!(all(&store, "t").is_empty(), "a refused put stores nothing");
    // Two puts in one group commit: only the one whose blob went is refused.
    let batch = [Op::Put(Box::new(next("t"))), Op::Put(Box::new(next("u")))];
    let (results, committed) = store.raw(|conn| Ok(Sqlite::commit_batch(conn, &batch))).unwrap();
    assert!(committed);
    assert!(matches!(results[0], Err(Error::DeltaBaseMissing(_))), "{results:?}");
    assert_eq!(results[1], Ok(0));
    assert!(all(&store, "t").is_empty());
    let u = all(&store, "u");
    assert_eq!(u.len(), 2);
    assert_eq!(u[0].blobs.len(), 2, "the checkpoint reads both values back: {:?}", u[0]);
}

#[test]
fn a_broken_chain_is_an_error_not_a_short_value() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    store.put(cp("t", "1", None, "r", &[("m", "1")])).unwrap();
    let mut second = cp("t", "2", Some("1"), "r", &[("m", "2")]);
    second.blobs = vec![delta("2", "1", "+b")];
    store.put(second).unwrap();
    store
        .raw(|conn| Ok(conn.execute("DELETE FROM flg_blobs WHERE version = '1'", [])?))
        .unwrap();
    let q = ListQuery {
        thread_id: Some("t".into()),
        checkpoint_id: Some("2".into()),
        ..ListQuery::default()
    };
    assert!(matches!(store.list(&q), Err(Error::Storage(m)) if m.contains("not stored")));
    // get_tuple's read of one checkpoint reports it too.
    let one = ListQuery {
        checkpoint_ns: Some(String::new()),
        limit: Some(1),
        ..q
    };
    assert!(matches!(store.list(&one), Err(Error::Storage(m)) if m.contains("not stored")));
}

#[test]
fn a_forked_child_gets_an_error_instead_of_waiting_forever() {
    let dir = std::env::temp_dir().join(format!("flg-test-fork-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("forked.db");
    let path = path.to_str().unwrap();
    let store = Store::open(path, &StoreOptions::default()).unwrap();
    store.put(cp("t", "1", None, "r", &[("a", "1")])).unwrap();
    assert_eq!(all(&store, "t").len(), 1);
    store.writer.pretend_forked();
    let put = store.put(cp("t", "2", Some("1"), "r", &[("a", "2")]));
    assert!(
        matches!(&put, Err(Error::ForkedProcess(m)) if m.contains("fork")),
        "{put:?}"
    );
    let read = store.list(&ListQuery::default());
    assert!(matches!(read, Err(Error::ForkedProcess(_))));
    store.close(); // returns: nothing to join
    assert!(store.is_closed());
    drop(store);
    let again = Store::open(path, &StoreOptions::default()).unwrap();
    assert_eq!(all(&again, "t").len(), 1);
    drop(again);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn temp_db(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("flg-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path.to_str().unwrap().to_owned()
}

#[test]
fn in_a_group_commit_a_failing_call_fails_alone() {
    // Small batches, many threads: failing and succeeding calls share commits.
    let options = StoreOptions {
        max_batch: 3,
        ..StoreOptions::default()
    };
    let store = std::sync::Arc::new(Store::open(&temp_db("group.db"), &options).unwrap());
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..40 {
                    let thread = format!("t{t}");
                    if i % 3 == 0 {
                        let mut orphan = cp(&thread, &format!("bad{i:04}"), None, "r", &[("m", "9")]);
                        orphan.blobs = vec![delta("9", "missing", "+x")];
                        assert!(matches!(store.put(orphan), Err(Error::DeltaBaseMissing(_))));
                    } else {
                        store
                            .put(cp(&thread, &format!("{i:04}"), None, "r", &[("a", &i.to_string())]))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for t in 0..6 {
        let ids: Vec<String> = all(&store, &format!("t{t}"))
            .into_iter()
            .map(|c| c.checkpoint_id)
            .collect();
        assert_eq!(ids.len(), 26, "{ids:?}");
        assert!(ids.iter().all(|id| !id.starts_with("bad")));
    }
    let (calls, _commits) = store.writer_stats();
    assert_eq!(calls, 240);
}

#[test]
fn close_while_threads_write_lets_every_call_finish_or_fail_closed() {
    let store = std::sync::Arc::new(Store::open(&temp_db("closing.db"), &StoreOptions::default()).unwrap());
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                let mut stored = 0;
                for i in 0..200 {
                    match store.put(cp(&format!("t{t}"), &format!("{i:04}"), None, "r", &[("a", "1")])) {
                        Ok(()) => stored += 1,
                        Err(Error::Closed(_)) => break,
                        Err(e) => panic!("unexpected error {e:?}"),
                    }
                }
                stored
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    store.close();
    let stored: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // Every call that returned Ok was committed: reopen the file and count.
    let path = store.path().to_owned();
    drop(store);
    let reopened = Store::open(&path, &StoreOptions::default()).unwrap();
    for (t, n) in stored.iter().enumerate() {
        assert_eq!(all(&reopened, &format!("t{t}")).len(), *n);
    }
}

/// Rewrites a current file into the version-1 layout (blobs keyed channel first).
fn downgrade_to_v1(path: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(
            "BEGIN;
             CREATE TABLE flg_blobs_v1 (thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL, channel TEXT NOT NULL,
                 version TEXT NOT NULL, delta_base TEXT, type TEXT NOT NULL, blob BLOB,
                 PRIMARY KEY (thread_id, checkpoint_ns, channel, version)) WITHOUT ROWID;
             INSERT INTO flg_blobs_v1 SELECT thread_id, checkpoint_ns, channel, version, delta_base, type, blob
                 FROM flg_blobs;
             DROP TABLE flg_blobs;
             ALTER TABLE flg_blobs_v1 RENAME TO flg_blobs;
             CREATE TABLE flg_writes_v1 (thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL,
                 checkpoint_id TEXT NOT NULL, task_id TEXT NOT NULL, idx INTEGER NOT NULL, channel TEXT NOT NULL,
                 task_path TEXT NOT NULL DEFAULT '', type TEXT NOT NULL, blob BLOB,
                 PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx));
             INSERT INTO flg_writes_v1 SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel,
                 task_path, type, blob FROM flg_writes;
             DROP TABLE flg_writes;
             ALTER TABLE flg_writes_v1 RENAME TO flg_writes;
             ALTER TABLE flg_checkpoints DROP COLUMN ts_ms;
             UPDATE flg_meta SET value = '1' WHERE key = 'schema_version';
             COMMIT;",
        )
        .unwrap();
}

fn table_sql(path: &str, table: &str) -> String {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT sql FROM sqlite_master WHERE name = ?1", [table], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_version_1_file_is_migrated_with_every_value_and_chain() {
    let path = temp_db("v1.db");
    let before = {
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        store.put(cp("u", "1", None, "r", &[("m", "1"), ("n", "1")])).unwrap();
        let mut next = cp("u", "2", Some("1"), "r", &[("m", "2"), ("n", "1")]);
        next.blobs = vec![delta("2", "1", "+b")];
        store.put(next).unwrap();
        store
            .put_writes(NewWrites {
                thread_id: "u".into(),
                checkpoint_ns: String::new(),
                checkpoint_id: "2".into(),
                task_id: "task".into(),
                task_path: "~x".into(),
                writes: vec![NewWrite {
                    idx: 0,
                    channel: "c".into(),
                    type_tag: "bytes".into(),
                    data: b"w".to_vec(),
                }],
            })
            .unwrap();
        let listed = all(&store, "u");
        assert_eq!(listed[0].writes.len(), 1);
        store.close();
        listed
    };
    downgrade_to_v1(&path);
    assert!(table_sql(&path, "flg_blobs").contains("channel, version)"));
    assert!(!table_sql(&path, "flg_writes").contains("WITHOUT ROWID"));
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert_eq!(all(&store, "u"), before);
    assert_eq!(segments(&store, "u", "2"), ["m@1", "+b"]);
    store.close();
    assert!(table_sql(&path, "flg_blobs").contains("version, channel)"));
    assert!(table_sql(&path, "flg_writes").contains("WITHOUT ROWID"));
    let version: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT value FROM flg_meta WHERE key = 'schema_version'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(version, "5");
}

/// Versions 4 and 5 changed no table: a version-3 or version-4 file reads as it was and is
/// marked 5, so that builds from before refuse it.
#[test]
fn version_3_and_4_files_are_marked_5_with_every_value() {
    for old in ["3", "4"] {
        let path = temp_db(&format!("v{old}.db"));
        let before = {
            let store = Store::open(&path, &StoreOptions::default()).unwrap();
            store.put(cp("u", "1", None, "r", &[("m", "1"), ("n", "1")])).unwrap();
            let listed = all(&store, "u");
            store.close();
            listed
        };
        let meta = |sql: &str| {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(sql).unwrap();
            conn.query_row("SELECT value FROM flg_meta WHERE key = 'schema_version'", [], |r| {
                r.get::<_, String>(0)
            })
            .unwrap()
        };
        assert_eq!(
            meta(&format!(
                "UPDATE flg_meta SET value = '{old}' WHERE key = 'schema_version'"
            )),
            old
        );
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        assert_eq!(all(&store, "u"), before);
        store.close();
        assert_eq!(meta(""), "5");
    }
}

#[test]
fn a_file_from_a_newer_version_is_refused_untouched() {
    let path = temp_db("v9.db");
    Store::open(&path, &StoreOptions::default()).unwrap().close();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE flg_meta SET value = '9' WHERE key = 'schema_version'")
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path, &StoreOptions::default()).err().unwrap();
    assert!(
        matches!(err, Error::ForeignSchema(ref m) if m.contains("version 9")),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// `get` (`get_tuple`'s read) takes its own path; it must return exactly what the general
/// query returns.
#[test]
fn reading_one_checkpoint_returns_what_the_general_query_returns() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    store.put(cp("t", "1", None, "r", &[("m", "1"), ("n", "1")])).unwrap();
    let mut second = cp("t", "2", Some("1"), "r", &[("m", "2"), ("n", "1"), ("e", "2")]);
    second.blobs = vec![
        delta("2", "1", "+b"),
        Blob {
            channel: "e".into(),
            version: "2".into(),
            type_tag: "empty".into(),
            data: Vec::new(),
            delta_base: None,
            keep_existing: false,
        },
    ];
    store.put(second).unwrap();
    let mut third = cp("t", "3", Some("2"), "r", &[("m", "3"), ("n", "3")]);
    third.blobs = vec![delta("3", "2", "+c"), third.blobs[1].clone()];
    store.put(third).unwrap();
    for (task, idx) in [("b", 1), ("a", 0), ("a", -1)] {
        store
            .put_writes(NewWrites {
                thread_id: "t".into(),
                checkpoint_ns: String::new(),
                checkpoint_id: "2".into(),
                task_id: task.into(),
                task_path: "~p".into(),
                writes: vec![NewWrite {
                    idx,
                    channel: "c".into(),
                    type_tag: "bytes".into(),
                    data: task.as_bytes().to_vec(),
                }],
            })
            .unwrap();
    }
    for id in [None, Some("1"), Some("2"), Some("3"), Some("missing")] {
        let general = ListQuery {
            thread_id: Some("t".into()),
            checkpoint_ns: Some(String::new()),
            checkpoint_id: id.map(Into::into),
            limit: Some(2),
            ..ListQuery::default()
        };
        let mut expected = store.list(&general).unwrap();
        expected.truncate(1);
        let one: Vec<_> = store.get("t", "", id, &[], false).unwrap().into_iter().collect();
        assert_eq!(one, expected, "checkpoint {id:?}");
    }
    let latest = store.get("t", "", None, &[], false).unwrap().unwrap();
    assert_eq!(latest.checkpoint_id, "3");
    let second = store.get("t", "", Some("2"), &[], false).unwrap().unwrap();
    assert_eq!(
        second
            .writes
            .iter()
            .map(|w| (w.task_id.as_str(), w.idx))
            .collect::<Vec<_>>(),
        [("a", -1), ("a", 0), ("b", 1)]
    );
    assert!(second.blobs.iter().all(|b| b.channel != "e"));
}

#[test]
fn a_panic_inside_a_commit_fails_that_call_and_leaves_the_file_writable() {
    let path = temp_db("panic.db");
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    store.put(cp("t", "1", None, "r", &[("a", "1")])).unwrap();
    let result = store.put_then_panic(cp("t", "2", Some("1"), "r", &[("a", "2")]));
    assert!(
        matches!(result, Err(Error::Storage(ref m)) if m.contains("nothing was stored")),
        "{result:?}"
    );
    // Rolled back: neither this process nor another sees the half-written checkpoint, and
    // both can write.
    let ids = |s: &Store| all(s, "t").into_iter().map(|c| c.checkpoint_id).collect::<Vec<_>>();
    assert_eq!(ids(&store), ["1"]);
    store.put(cp("t", "3", Some("1"), "r", &[("a", "3")])).unwrap();
    let other = Store::open(&path, &StoreOptions::default()).unwrap();
    other.put(cp("u", "1", None, "r", &[("a", "1")])).unwrap();
    assert_eq!(ids(&other), ["3", "1"]);
    other.close();
    store.close();
}

fn meta_cp(
    thread: &str,
    id: &str,
    parent: Option<&str>,
    metadata: &str,
    versions: &[(&str, &str)],
    values: &[&str],
) -> NewCheckpoint {
    let mut c = cp(thread, id, parent, "r", versions);
    c.metadata_json = metadata.into();
    c.blobs.retain(|b| values.contains(&b.channel.as_str()));
    c
}

fn write(thread: &str, id: &str, channel: &str, data: &str) -> NewWrites {
    NewWrites {
        thread_id: thread.into(),
        checkpoint_ns: String::new(),
        checkpoint_id: id.into(),
        task_id: format!("task-{data}"),
        task_path: String::new(),
        writes: vec![NewWrite {
            idx: 0,
            channel: channel.into(),
            type_tag: "bytes".into(),
            data: data.as_bytes().to_vec(),
        }],
    }
}

/// A chain 1 <- 2 <- 3 <- 4 where channel `d` holds a value at 1 only, the others list it as a
/// delta channel, and each checkpoint has one write to it.
fn delta_chain(store: &Store) {
    let counters = r#"{"counters_since_delta_snapshot": {"d": [1, 1]}}"#;
    store.put(meta_cp("t", "1", None, "{}", &[("d", "1")], &["d"])).unwrap();
    for (id, parent, version) in [("2", "1", "2"), ("3", "2", "3"), ("4", "3", "4")] {
        store
            .put(meta_cp("t", id, Some(parent), counters, &[("d", version)], &[]))
            .unwrap();
    }
    for id in ["1", "2", "3", "4"] {
        store.put_writes(write("t", id, "d", &format!("w{id}"))).unwrap();
    }
}

#[test]
fn delta_history_walks_parents_to_the_nearest_value() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    delta_chain(&store);
    let h = store
        .delta_history("t", "", Some("4"), &["d".into(), "x".into()], &[])
        .unwrap();
    let data = |h: &ChannelHistory| {
        h.writes
            .iter()
            .map(|w| String::from_utf8(w.data.clone()).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(data(&h[0]), ["w1", "w2", "w3"]);
    assert_eq!(h[0].seed.as_ref().unwrap().segments[0].1, b"d@1");
    assert_eq!(h[0].seed_version.as_deref(), Some("1"));
    assert!(data(&h[1]).is_empty() && h[1].seed.is_none());
    // The caller holds version 1: its value is not read.
    let h = store
        .delta_history("t", "", None, &["d".into()], &[("d".into(), "1".into())])
        .unwrap();
    assert!(h[0].seed.as_ref().unwrap().segments.is_empty());
}

#[test]
fn prune_keeps_the_ancestors_a_delta_channel_needs() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    delta_chain(&store);
    store.put(meta_cp("u", "1", None, "{}", &[], &[])).unwrap();
    store.put(meta_cp("u", "2", Some("1"), "{}", &[], &[])).unwrap();
    store
        .prune(vec!["t".into(), "u".into()], PruneStrategy::KeepLatest)
        .unwrap();
    assert_eq!(all(&store, "t").len(), 4, "every ancestor back to the value of d");
    assert_eq!(all(&store, "u").len(), 1, "no delta channel: the newest only");
    let h = store.delta_history("t", "", Some("4"), &["d".into()], &[]).unwrap();
    assert_eq!(h[0].writes.len(), 3);
}

#[test]
fn prune_idle_goes_by_the_time_in_the_ids() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    // UUIDv6 ids made on 2024-07-31 and a non-UUID id (stored now).
    store
        .put(cp("old", "1ef4f797-8335-6428-8001-8a1503f9b875", None, "r", &[]))
        .unwrap();
    store.put(cp("new", "1", None, "r", &[])).unwrap();
    let july_2025 = 1_751_328_000_000;
    assert_eq!(store.prune_idle(july_2025, PruneStrategy::Delete).unwrap(), 1);
    assert!(all(&store, "old").is_empty());
    assert_eq!(all(&store, "new").len(), 1);
}

#[test]
fn an_import_keeps_what_is_there_and_counts_what_it_copied() {
    let store = Store::open(":memory:", &StoreOptions::default()).unwrap();
    store.put(cp("t", "1", None, "r", &[("a", "1")])).unwrap();
    let mut changed = cp("t", "1", None, "r", &[("a", "1")]);
    changed.metadata_json = r#"{"imported": true}"#.into();
    let copied = store
        .import_many(
            vec![changed, cp("t", "2", Some("1"), "r", &[("a", "1")])],
            vec![write("t", "1", "a", "x")],
        )
        .unwrap();
    assert_eq!(copied, 1);
    let rows = all(&store, "t");
    assert_eq!(rows.len(), 2);
    let first = rows.iter().find(|r| r.checkpoint_id == "1").unwrap();
    assert!(!first.metadata_json.contains("imported"));
    assert!(
        first.writes.is_empty(),
        "the writes of a kept checkpoint are not imported"
    );
}

/// Every batch of a listing, in order, concatenated.
fn streamed(store: &Store, q: &ListQuery) -> Vec<StoredCheckpoint> {
    let stream = store.list_stream(q).unwrap();
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    while let Some(batch) = stream.next_batch() {
        let batch = batch.unwrap();
        sizes.push(batch.len());
        out.extend(batch);
    }
    // 1, 2, 4, ... up to the largest, then what is left.
    for (i, pair) in sizes.windows(2).enumerate() {
        assert!(pair[1] <= (pair[0] * 2).min(stream::MOST), "batch {i}: {sizes:?}");
    }
    out
}

#[test]
fn list_stream_returns_what_list_returns_for_every_query() {
    let path = temp_db("stream.db");
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    for thread in ["t", "u"] {
        let mut parent: Option<String> = None;
        for i in 0..300 {
            let id = format!("{i:05}");
            let version = format!("{}", i / 7);
            let mut c = cp(
                thread,
                &id,
                parent.as_deref(),
                if i % 3 == 0 { "even" } else { "odd" },
                &[("a", &version), ("b", "0")],
            );
            c.metadata_json = format!(r#"{{"step": {i}, "tags": ["{}"], "source": "loop"}}"#, i % 4);
            if i % 7 != 0 {
                c.blobs.retain(|b| b.channel != "a");
            }
            if i != 0 {
                c.blobs.retain(|b| b.channel != "b");
            }
            store.put(c).unwrap();
            parent = Some(id);
        }
    }
    let json = |key: &str, v: serde_json::Value| MetaFilter {
        key: key.into(),
        value: MetaValue::Json(v),
    };
    let queries = [
        ListQuery::default(),
        ListQuery {
            thread_id: Some("t".into()),
            ..ListQuery::default()
        },
        ListQuery {
            thread_id: Some("t".into()),
            checkpoint_ns: Some(String::new()),
            limit: Some(37),
            ..ListQuery::default()
        },
        ListQuery {
            before: Some("00150".into()),
            limit: Some(100),
            ..ListQuery::default()
        },
        ListQuery {
            thread_id: Some("u".into()),
            checkpoint_id: Some("00042".into()),
            ..ListQuery::default()
        },
        ListQuery {
            filter: vec![MetaFilter {
                key: "step".into(),
                value: MetaValue::Int(7),
            }],
            ..ListQuery::default()
        },
        ListQuery {
            thread_id: Some("t".into()),
            filter: vec![json("tags", serde_json::json!(["1"]))],
            limit: Some(20),
            ..ListQuery::default()
        },
        ListQuery {
            filter: vec![json("tags", serde_json::json!(["3"]))],
            ..ListQuery::default()
        },
        ListQuery {
            limit: Some(0),
            ..ListQuery::default()
        },
    ];
    for q in &queries {
        let want = store.list(q).unwrap();
        assert_eq!(streamed(&store, q), want, "{q:?}");
    }
    assert_eq!(streamed(&store, &queries[0]).len(), 600);
}

#[test]
fn a_list_stream_is_one_snapshot_and_a_closed_store_ends_it() {
    let path = temp_db("stream-snapshot.db");
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    let mut parent: Option<String> = None;
    for i in 0..100 {
        let id = format!("{i:03}");
        store.put(cp("t", &id, parent.as_deref(), "r", &[("a", &id)])).unwrap();
        parent = Some(id);
    }
    let q = ListQuery {
        thread_id: Some("t".into()),
        ..ListQuery::default()
    };
    let stream = store.list_stream(&q).unwrap();
    let first = stream.next_batch().unwrap().unwrap();
    store.delete_thread("t").unwrap();
    let mut ids: Vec<String> = first.into_iter().map(|c| c.checkpoint_id).collect();
    while let Some(batch) = stream.next_batch() {
        ids.extend(batch.unwrap().into_iter().map(|c| c.checkpoint_id));
    }
    assert_eq!(ids.len(), 100);
    assert_eq!(ids[0], "099");
    assert!(all(&store, "t").is_empty());

    store.put(cp("t", "1", None, "r", &[("a", "1")])).unwrap();
    store.put(cp("t", "2", Some("1"), "r", &[("a", "2")])).unwrap();
    let stream = store.list_stream(&q).unwrap();
    assert_eq!(stream.next_batch().unwrap().unwrap().len(), 1);
    store.close();
    assert!(matches!(stream.next_batch(), Some(Err(Error::Closed(_)))));
    assert!(stream.next_batch().is_none());
    assert!(matches!(store.list_stream(&q), Err(Error::Closed(_))));
}
