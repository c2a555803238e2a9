//! The SQL of the Postgres backend: the schema as an ordered list of migrations, and every
//! statement as a named constant (or, where a statement has variants, a function that builds
//! it once). Table names carry the `flg_` prefix, so they live beside
//! `langgraph-checkpoint-postgres`'s tables (`checkpoints`, `checkpoint_blobs`, ...) without
//! touching them.
use std::sync::OnceLock;

/// The schema, one migration per entry. Entry `i` brings the schema to version `i`; the
/// version reached is kept in `flg_pg_migrations` (one row per applied version), as
/// `langgraph-checkpoint-postgres` keeps its `MIGRATIONS`. Never edit an entry: append one.
pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS flg_pg_migrations (v INTEGER PRIMARY KEY)",
    // Checkpoints without their channel values: which version each channel has is in
    // `channels`/`versions` (parallel arrays), the values are in flg_blobs.
    "CREATE TABLE IF NOT EXISTS flg_checkpoints (
        thread_id TEXT NOT NULL,
        checkpoint_ns TEXT NOT NULL DEFAULT '',
        checkpoint_id TEXT NOT NULL,
        parent_checkpoint_id TEXT,
        run_id TEXT,
        channels TEXT[] NOT NULL,
        versions TEXT[] NOT NULL,
        metadata JSONB NOT NULL DEFAULT '{}',
        type TEXT NOT NULL,
        checkpoint BYTEA NOT NULL,
        PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
    )",
    // One row per channel version; `delta_base` names the version whose list this row's
    // items extend (an append-only delta), NULL for a full value.
    "CREATE TABLE IF NOT EXISTS flg_blobs (
        thread_id TEXT NOT NULL,
        checkpoint_ns TEXT NOT NULL DEFAULT '',
        channel TEXT NOT NULL,
        version TEXT NOT NULL,
        delta_base TEXT,
        type TEXT NOT NULL,
        blob BYTEA,
        PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
    )",
    "CREATE TABLE IF NOT EXISTS flg_writes (
        thread_id TEXT NOT NULL,
        checkpoint_ns TEXT NOT NULL DEFAULT '',
        checkpoint_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        channel TEXT NOT NULL,
        task_path TEXT NOT NULL DEFAULT '',
        type TEXT NOT NULL,
        blob BYTEA,
        PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
    )",
    "CREATE INDEX IF NOT EXISTS flg_checkpoints_run_id ON flg_checkpoints (run_id) WHERE run_id IS NOT NULL",
    // The single-writer guard: the checkpoint each (thread, namespace) was last extended to.
    "CREATE TABLE IF NOT EXISTS flg_heads (
        thread_id TEXT NOT NULL,
        checkpoint_ns TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        PRIMARY KEY (thread_id, checkpoint_ns)
    )",
    // When each checkpoint was stored, for time-based retention of checkpoints whose id is not
    // a UUIDv6 (rows stored before this migration get the time it ran).
    "ALTER TABLE flg_checkpoints ADD COLUMN IF NOT EXISTS stored_at TIMESTAMPTZ NOT NULL DEFAULT now()",
    // Blob keys ordered by version before channel: versions grow with every checkpoint, so a
    // thread's new rows go to one place in the index instead of one place per channel (where
    // each page split left half a page empty). Every lookup gives all four columns. From this
    // version on, payloads may be stored deflated (`deflate.rs`), which earlier builds cannot
    // read: their setup() refuses the database.
    "ALTER TABLE flg_blobs DROP CONSTRAINT flg_blobs_pkey,
        ADD PRIMARY KEY (thread_id, checkpoint_ns, version, channel)",
    // From this version on, small scalar channel values (bool, int, float, short str) are
    // stored inside the checkpoint payload with their versions, and left out of `channels` /
    // `versions` (no blob row): earlier builds would read such a checkpoint without them, so
    // their setup() refuses the database. Nothing to change in the tables.
    "COMMENT ON TABLE flg_checkpoints IS 'fast-langgraph checkpoints; from schema 8, small scalar channel values are inline in the checkpoint payload'",
    // Channel versions as keys in their compact binary form (`crate::checkpoint::versions`):
    // LangGraph's 51-character versions take 11-12 bytes in `flg_checkpoints.versions` and in
    // `flg_blobs`' key and `delta_base`. The stored versions are converted here by a function
    // computing the same bytes as `versions::encode` (dropped again once used); every string
    // round-trips. The indexes, whose new keys go to their right end, fill their pages whole.
    // Earlier builds' setup() refuses the database.
    "CREATE FUNCTION flg_version_key(v text) RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS $fn$
    DECLARE
        n bigint;
        h text := '';
        r text := substr(v, 34);
        tag int := 64;
    BEGIN
        IF v !~ '^[0-9]{32}[.][-+.0-9e]*$' THEN
            RETURN decode('00', 'hex') || convert_to(v, 'UTF8');
        END IF;
        IF left(v, 32)::numeric >= 9223372036854775808 THEN
            RETURN decode('00', 'hex') || convert_to(v, 'UTF8');
        END IF;
        n := left(v, 32)::bigint;
        IF n > 0 THEN
            h := to_hex(n);
            h := repeat('0', length(h) % 2) || h;
        END IF;
        IF left(r, 2) = '0.' THEN
            tag := 96;
            r := substr(r, 3);
        END IF;
        RETURN decode(to_hex(tag + length(h) / 2) || h || translate(r, '.e-+', 'abcd') || repeat('f', length(r) % 2),
                      'hex');
    END $fn$;
    CREATE FUNCTION flg_version_keys(vs text[]) RETURNS bytea[] LANGUAGE sql IMMUTABLE STRICT AS $fn$
        SELECT coalesce(array_agg(flg_version_key(x) ORDER BY i), '{}') FROM unnest(vs) WITH ORDINALITY AS u(x, i)
    $fn$;
    ALTER INDEX flg_checkpoints_pkey SET (fillfactor = 100);
    ALTER INDEX flg_blobs_pkey SET (fillfactor = 100);
    ALTER INDEX flg_writes_pkey SET (fillfactor = 100);
    ALTER TABLE flg_checkpoints ALTER COLUMN versions TYPE bytea[] USING flg_version_keys(versions);
    ALTER TABLE flg_blobs ALTER COLUMN version TYPE bytea USING flg_version_key(version),
        ALTER COLUMN delta_base TYPE bytea USING flg_version_key(delta_base);
    REINDEX TABLE flg_writes;
    DROP FUNCTION flg_version_keys(text[]);
    DROP FUNCTION flg_version_key(text);
    COMMENT ON TABLE flg_checkpoints IS 'fast-langgraph checkpoints; from schema 8, small scalar channel values are inline in the checkpoint payload; from schema 9, channel versions are stored in their compact binary form'",
    // From this version on, with the default serializer, small channel values of any type
    // (up to 2 KB of msgpack per checkpoint) are stored inside the checkpoint payload, and a
    // checkpoint that does not change such a value carries it again instead of referring to a
    // blob (none was written). An earlier build's put would refer to that blob, and its
    // DeltaChannel histories would miss such a seed: its setup() refuses the database.
    // Nothing to change in the tables.
    "COMMENT ON TABLE flg_checkpoints IS 'fast-langgraph checkpoints; from schema 8, small scalar channel values are inline in the checkpoint payload; from schema 9, channel versions are stored in their compact binary form; from schema 10, small channel values of any type may be inline, and are carried by the checkpoints that do not change them'",
    // The text key columns (and those compared with them, `channels` included) in byte order, whatever the
    // database's default collation: the newest checkpoint, `before`, `limit` and prune's
    // keep-latest order checkpoint ids as the saver's own code and LangGraph's InMemorySaver do
    // (by code point), where a database made with a linguistic collation (en_US.UTF-8, ICU
    // en-US: most managed services') ordered "1-a" before "1-B" and "1-é" before "1-f"; and
    // each index comparison is a memcmp instead of a locale's. The indexes on these columns are
    // rebuilt (the tables are locked meanwhile, see `lock_tables`); the rows are not rewritten.
    // Earlier builds' setup() refuses the database, and their running processes fail their
    // reads (the statements they prepared return columns of another collation) until restarted;
    // this build prepares them again (`pool::is_stale_plan`).
    "ALTER TABLE flg_checkpoints ALTER COLUMN thread_id TYPE text COLLATE \"C\",
        ALTER COLUMN checkpoint_ns TYPE text COLLATE \"C\", ALTER COLUMN checkpoint_id TYPE text COLLATE \"C\",
        ALTER COLUMN parent_checkpoint_id TYPE text COLLATE \"C\", ALTER COLUMN run_id TYPE text COLLATE \"C\",
        ALTER COLUMN channels TYPE text[] COLLATE \"C\";
    ALTER TABLE flg_blobs ALTER COLUMN thread_id TYPE text COLLATE \"C\",
        ALTER COLUMN checkpoint_ns TYPE text COLLATE \"C\", ALTER COLUMN channel TYPE text COLLATE \"C\";
    ALTER TABLE flg_writes ALTER COLUMN thread_id TYPE text COLLATE \"C\",
        ALTER COLUMN checkpoint_ns TYPE text COLLATE \"C\", ALTER COLUMN checkpoint_id TYPE text COLLATE \"C\",
        ALTER COLUMN task_id TYPE text COLLATE \"C\", ALTER COLUMN channel TYPE text COLLATE \"C\";
    ALTER TABLE flg_heads ALTER COLUMN thread_id TYPE text COLLATE \"C\",
        ALTER COLUMN checkpoint_ns TYPE text COLLATE \"C\", ALTER COLUMN checkpoint_id TYPE text COLLATE \"C\";
    COMMENT ON TABLE flg_checkpoints IS 'fast-langgraph checkpoints; from schema 8, small scalar channel values are inline in the checkpoint payload; from schema 9, channel versions are stored in their compact binary form; from schema 10, small channel values of any type may be inline, and are carried by the checkpoints that do not change them; from schema 11, the text key columns are in byte order (COLLATE \"C\")'",
];

/// The checkpointer's tables (but the migrations' own), in the order `setup()` locks them
/// before an upgrade.
pub const TABLES: &[&str] = &["flg_blobs", "flg_checkpoints", "flg_writes", "flg_heads"];

/// Serializes concurrent `setup()` calls of several replicas (an arbitrary constant key).
pub const SETUP_LOCK: &str = "SELECT pg_advisory_xact_lock(7346193514072315501)";

pub const SELECT_VERSION: &str = "SELECT coalesce(max(v), -1) FROM flg_pg_migrations";

pub const INSERT_VERSION: &str = "INSERT INTO flg_pg_migrations (v) VALUES ($1) ON CONFLICT DO NOTHING";

/// Tables of `langgraph-checkpoint-postgres`, looked for to give `import_postgres_saver` a
/// clear error.
pub const TABLE_EXISTS: &str = "SELECT to_regclass($1) IS NOT NULL";

/// The parts of the put statement: the new blobs, a check that every delta's base is stored
/// (or arrives in the same put), the blob insert, and the checkpoint upsert. Parameters:
/// $1 thread, $2 ns, $3 id, $4 parent, $5 run_id, $6 channels, $7 versions (each in its stored
/// form, `versions::encode`, as every version parameter and column is), $8 metadata JSON,
/// $9..$13 blob columns, $14 type, $15 checkpoint bytes, $16 per blob whether a value already
/// stored under its key stays as it is (`Blob::keep_existing`) instead of being replaced;
/// after them (`{rc}`, `{rv}`: $17 and $18, or $18 and $19 with the guard's $17), the channels
/// and versions of the blobs the checkpoint refers to without writing them
/// ([`NewCheckpoint::refs`](crate::checkpoint::NewCheckpoint)), each of which must be stored
/// too. The transaction holds the thread's shared lock, so no delete runs meanwhile.
const PUT_HEAD: &str = "WITH nb AS (
    SELECT * FROM unnest($9::text[], $10::bytea[], $11::bytea[], $12::text[], $13::bytea[], $16::bool[])
        AS u(channel, version, delta_base, type, blob, keep)
), missing AS (
    SELECT 1 FROM nb WHERE nb.delta_base IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM flg_blobs b WHERE b.thread_id = $1 AND b.checkpoint_ns = $2
                      AND b.channel = nb.channel AND b.version = nb.delta_base)
      AND NOT EXISTS (SELECT 1 FROM nb n2 WHERE n2.channel = nb.channel AND n2.version = nb.delta_base)
    UNION ALL
    SELECT 1 FROM unnest({rc}::text[], {rv}::bytea[]) AS r(channel, version)
    WHERE NOT EXISTS (SELECT 1 FROM flg_blobs b WHERE b.thread_id = $1 AND b.checkpoint_ns = $2
                      AND b.channel = r.channel AND b.version = r.version)
)";

const PUT_BODY: &str = ", ib AS (
    INSERT INTO flg_blobs (thread_id, checkpoint_ns, channel, version, delta_base, type, blob)
    SELECT $1, $2, channel, version, delta_base, type, blob FROM nb WHERE NOT keep AND {ok}
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO UPDATE
        SET delta_base = EXCLUDED.delta_base, type = EXCLUDED.type, blob = EXCLUDED.blob
), ik AS (
    INSERT INTO flg_blobs (thread_id, checkpoint_ns, channel, version, delta_base, type, blob)
    SELECT $1, $2, channel, version, delta_base, type, blob FROM nb WHERE keep AND {ok}
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
), ic AS (
    INSERT INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id,
                                 channels, versions, metadata, type, checkpoint)
    SELECT $1, $2, $3, $4, $5, $6, $7, ($8::text)::jsonb, $14, $15 WHERE {ok}
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE
        SET parent_checkpoint_id = EXCLUDED.parent_checkpoint_id, run_id = EXCLUDED.run_id,
            channels = EXCLUDED.channels, versions = EXCLUDED.versions, metadata = EXCLUDED.metadata,
            type = EXCLUDED.type, checkpoint = EXCLUDED.checkpoint
    RETURNING 1
)
SELECT (SELECT count(*) FROM missing), (SELECT count(*) FROM ic)";

/// With the guard on, the head row moves to the new checkpoint in the same statement: a put
/// that continues the head ($17 true) moves it only if it is still at the parent ($4) or
/// already at this checkpoint (a retried put); a fork ($17 false) moves it unconditionally.
/// `ON CONFLICT DO UPDATE ... WHERE` waits for a concurrent put of the same thread and
/// re-checks against the row it committed, so of two continuations of one head exactly one
/// moves it.
const PUT_GUARD: &str = ", head AS (
    INSERT INTO flg_heads AS h (thread_id, checkpoint_ns, checkpoint_id)
    SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM missing)
    ON CONFLICT (thread_id, checkpoint_ns) DO UPDATE SET checkpoint_id = EXCLUDED.checkpoint_id
        WHERE NOT $17::bool OR h.checkpoint_id IS NOT DISTINCT FROM $4 OR h.checkpoint_id = EXCLUDED.checkpoint_id
    RETURNING 1
)";

/// The put statement without the guard.
pub fn put_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "{}{}",
            PUT_HEAD.replace("{rc}", "$17").replace("{rv}", "$18"),
            PUT_BODY.replace("{ok}", "NOT EXISTS (SELECT 1 FROM missing)")
        )
    })
}

/// The put statement with the guard.
pub fn put_guarded_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "{}{PUT_GUARD}{}",
            PUT_HEAD.replace("{rc}", "$18").replace("{rv}", "$19"),
            PUT_BODY.replace("{ok}", "EXISTS (SELECT 1 FROM head)")
        )
    })
}

/// A put on its own, without the guard: the whole put as one statement, which the server runs
/// in a transaction of its own (no `BEGIN` nor `COMMIT` to send, and one reply). It takes its
/// thread's shared advisory lock ($19, see [`begin_writing`]) before it reads or inserts
/// anything, so a prune of the thread that holds the exclusive lock finishes first, and one that
/// comes later waits for this put to commit.
///
/// A delta's base is looked up with a row lock (`FOR KEY SHARE`, the weakest, which waits only
/// for a delete of the row or a change of its key, and blocks only those), after the lock is
/// held (`base` waits for the count of `lock`). The statement sees the database as it was when
/// it started, which may be before a prune that deleted the base while the statement waited for
/// the lock; a plain read would still find the base there, and store a delta over nothing. A
/// row-locking read is checked against the newest version of the row instead (READ COMMITTED's
/// rule for `FOR ... SHARE`): a base deleted meanwhile is not returned, so the put is refused
/// (first column above 0) and stores nothing; a base found stays locked until the put commits,
/// so no delete can take it away before then. A put never holds a row lock while it waits for
/// a prune's exclusive lock (the prune, holding that lock, would wait on the row lock to
/// delete the row).
///
/// Each base is one lookup by its whole primary key (a sub-select with a row lock is never
/// turned into a join). The keys looked up come from arrays built from `nb`, whose length the
/// planner does not know in either plan: with the arrays of the parameters themselves, a
/// custom plan (which sees how many values the put has) would cost one lookup and the generic
/// one ten, and the server would plan the statement anew at every call (0.26 ms each) instead
/// of keeping the generic plan.
///
/// Each blob the checkpoint refers to without writing it (its `refs`) is looked up the same
/// way, by its whole key with a row lock after the lock is held: one retention deleted (a
/// prune, `delete_thread`, `delete_for_runs` of another replica, committed since the put's
/// values were placed) is not found, and the put is refused as for a missing delta base (the
/// first column counts both). Same parameters as [`put_sql`], then $19 the thread's lock key.
pub fn put_alone_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "WITH lock AS (SELECT pg_advisory_xact_lock_shared($19::int8)), nb AS (
    SELECT * FROM unnest($9::text[], $10::bytea[], $11::bytea[], $12::text[], $13::bytea[], $16::bool[])
        WITH ORDINALITY AS u(channel, version, delta_base, type, blob, keep, o)
), {refs}, base AS (
    SELECT b.channel, b.version FROM unnest(
        ARRAY(SELECT channel FROM nb WHERE delta_base IS NOT NULL ORDER BY o),
        ARRAY(SELECT delta_base FROM nb WHERE delta_base IS NOT NULL ORDER BY o)) AS d(channel, version)
    CROSS JOIN LATERAL (SELECT b.channel, b.version FROM flg_blobs b WHERE b.thread_id = $1
        AND b.checkpoint_ns = $2 AND b.version = d.version AND b.channel = d.channel FOR KEY SHARE OF b) b
    WHERE (SELECT count(*) FROM lock) = 1
), missing AS (
    SELECT 1 FROM nb WHERE nb.delta_base IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM base WHERE base.channel = nb.channel AND base.version = nb.delta_base)
      AND NOT EXISTS (SELECT 1 FROM nb n2 WHERE n2.channel = nb.channel AND n2.version = nb.delta_base)
    UNION ALL
    SELECT 1 FROM refs WHERE NOT EXISTS (SELECT 1 FROM found WHERE found.channel = refs.channel
                                         AND found.version = refs.version)
){}",
            PUT_BODY.replace(
                "{ok}",
                "EXISTS (SELECT 1 FROM lock) AND NOT EXISTS (SELECT 1 FROM missing)"
            ),
            refs = refs_found("$17", "$18"),
        )
    })
}

/// The `refs` and `found` parts of a lone put: the blobs the checkpoint refers to without
/// writing them (channels in `channels`, versions in `versions`, parameters of the statement),
/// and those of them still stored, each looked up by its whole key with a row lock once the
/// thread's shared lock (`lock`) is held.
fn refs_found(channels: &str, versions: &str) -> String {
    format!(
        "refs AS (
    SELECT * FROM unnest({channels}::text[], {versions}::bytea[]) WITH ORDINALITY AS r(channel, version, o)
), found AS (
    SELECT b.channel, b.version FROM unnest(
        ARRAY(SELECT channel FROM refs ORDER BY o), ARRAY(SELECT version FROM refs ORDER BY o)) AS d(channel, version)
    CROSS JOIN LATERAL (SELECT b.channel, b.version FROM flg_blobs b WHERE b.thread_id = $1
        AND b.checkpoint_ns = $2 AND b.version = d.version AND b.channel = d.channel FOR KEY SHARE OF b) b
    WHERE (SELECT count(*) FROM lock) = 1
)"
    )
}

/// A put with no blob to store, first tried as a plain insert: [`PUT_ALONE_NO_BLOBS`] without
/// `ON CONFLICT`, the same lock taken first, the same row, the same reply. A checkpoint id is
/// new at almost every put, and an upsert pays for the case where it is not at every call: the
/// server looks the key up in the primary key's index before inserting, inserts the row as
/// speculative, confirms it in one more WAL record, and builds the update's projection when it
/// starts the statement; 5-8 us of its CPU per 1 KB put (docs/benchmarks.md). When the
/// checkpoint is already stored (a retried put, one stored again under its id), the insert
/// fails on the primary key, stores nothing (the server rolls its transaction back, releasing
/// the lock), and the put runs [`PUT_ALONE_NO_BLOBS`], which replaces the row: the rows stored
/// and the result are the upsert's. The server logs that failed insert as an error.
/// Parameters as [`PUT_ALONE_NO_BLOBS`]'s.
pub const PUT_ALONE_NEW: &str =
    "INSERT INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
                             run_id, channels, versions, metadata, type, checkpoint)
    SELECT $1, $2, $3, $4, $5, $6, $7, ($8::text)::jsonb, $9, $10
    FROM (SELECT pg_advisory_xact_lock_shared($11::int8)) AS lock
    RETURNING 0::int8, 1::int8";

/// The primary key of `flg_checkpoints`, which [`PUT_ALONE_NEW`] fails on when the checkpoint
/// is already stored.
pub const CHECKPOINTS_PKEY: &str = "flg_checkpoints_pkey";

/// [`put_alone_sql`] for a put with no blob to store (every value it changes kept inside the
/// checkpoint row, as a small state's are): the lock and the checkpoint's upsert only. The
/// blob inserts of [`put_alone_sql`] store nothing then, but the server still starts their
/// executor nodes (opening `flg_blobs` and its index) at every execution: 22-24 us of bind and
/// 107 us of execute for a 1 KB state against 17-18 and 72-73 here, with no `WITH` nor count
/// around the insert (the server's statement log, docs/benchmarks.md). The lock is taken before the insert, as there: the row inserted is
/// made from the lock's subquery, which runs first. One row comes back whether the checkpoint
/// was inserted or replaced (`ON CONFLICT DO UPDATE` returns both). Parameters: $1..$8 as
/// [`put_sql`]'s, $9 type, $10 checkpoint bytes, $11 the thread's lock key; returns 0 and the
/// number of checkpoint rows stored, as [`put_alone_sql`].
pub const PUT_ALONE_NO_BLOBS: &str =
    "INSERT INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
                             run_id, channels, versions, metadata, type, checkpoint)
    SELECT $1, $2, $3, $4, $5, $6, $7, ($8::text)::jsonb, $9, $10
    FROM (SELECT pg_advisory_xact_lock_shared($11::int8)) AS lock
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE
        SET parent_checkpoint_id = EXCLUDED.parent_checkpoint_id, run_id = EXCLUDED.run_id,
            channels = EXCLUDED.channels, versions = EXCLUDED.versions, metadata = EXCLUDED.metadata,
            type = EXCLUDED.type, checkpoint = EXCLUDED.checkpoint
    RETURNING 0::int8, 1::int8";

/// A put with no blob to store that refers to blobs stored apart ([`NewCheckpoint::refs`](crate::checkpoint::NewCheckpoint)):
/// [`put_alone_sql`]'s lock, lookups of those blobs and checkpoint upsert, without its blob
/// inserts, whose executor nodes the server would start at every call (a put continuing a
/// thread whose large value did not change, fsync off: 192-199 us with [`put_alone_sql`],
/// 161-179 with this statement, 112-134 with the plain insert before the check;
/// docs/benchmarks.md). Parameters as
/// [`PUT_ALONE_NO_BLOBS`]'s, then $12 and $13 the channels and versions referred to; returns
/// as [`put_alone_sql`] (the first column counts the blobs not found).
pub fn put_alone_refs_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "WITH lock AS (SELECT pg_advisory_xact_lock_shared($11::int8)), {}, missing AS (
    SELECT 1 FROM refs WHERE NOT EXISTS (SELECT 1 FROM found WHERE found.channel = refs.channel
                                         AND found.version = refs.version)
), ic AS (
    INSERT INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id,
                                 channels, versions, metadata, type, checkpoint)
    SELECT $1, $2, $3, $4, $5, $6, $7, ($8::text)::jsonb, $9, $10
    WHERE EXISTS (SELECT 1 FROM lock) AND NOT EXISTS (SELECT 1 FROM missing)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE
        SET parent_checkpoint_id = EXCLUDED.parent_checkpoint_id, run_id = EXCLUDED.run_id,
            channels = EXCLUDED.channels, versions = EXCLUDED.versions, metadata = EXCLUDED.metadata,
            type = EXCLUDED.type, checkpoint = EXCLUDED.checkpoint
    RETURNING 1
)
SELECT (SELECT count(*) FROM missing), (SELECT count(*) FROM ic)",
            refs_found("$12", "$13")
        )
    })
}

/// The puts and task writes of a batch as one statement, for when each put could run alone
/// ([`put_alone_sql`]: without the guard) and no two calls store the same checkpoint, blob or
/// write, nor does one call store the base of another's delta: one protocol round and no
/// `BEGIN` nor `COMMIT` for the whole batch, where the pipelined transaction sends one per call
/// and three more. The server runs it in a transaction of its own, so the calls commit together
/// or not at all, as in the transaction. It first takes the shared advisory lock of every thread
/// it stores checkpoints of ($1, sorted lock keys), before it reads or inserts anything (every
/// other part reads `nb`, which waits for the count of `lock`, which takes them all). Each
/// checkpoint is one element of $2..$9 (thread, ns, id, parent, run_id, metadata JSON, type,
/// checkpoint bytes); its channels and versions are the elements `$10 + 1` to `$10 + $11` of the
/// flat arrays $12 and $13. Each blob is one element of $14..$19, $29, $30 and $31 (thread, ns,
/// channel, version, type, bytes, whether a value already stored under its key stays, the
/// version its items extend if it is a delta, and which checkpoint of $2.. it belongs to,
/// from 1), each write one of $20..$28 (thread, ns, checkpoint, task, task path, idx, channel,
/// type, bytes), stored under [`PUT_WRITES`]'s rule.
///
/// A delta's base is found as [`put_alone_sql`] finds it, by its key with a row lock that sees
/// a delete committed after the statement started. A checkpoint one of whose deltas has no base (in the
/// table, or among its own blobs) stores nothing, neither its blobs nor its row, and the others
/// are stored, as in the transaction where each put is a statement of its own. So is one that
/// refers to a blob without writing it (each element of $32..$34: channel, version, which
/// checkpoint of $2.. from 1) that is no longer stored, looked up the same way. The rows stored
/// are those the same calls store one by one; it returns the number of checkpoint rows stored
/// and the checkpoints (from 1) refused for a missing base or blob.
pub const PUT_MANY_ALONE: &str = "WITH lock AS (
    SELECT pg_advisory_xact_lock_shared(k) FROM unnest($1::int8[]) AS k ORDER BY k
), nb AS (
    SELECT * FROM unnest($14::text[], $15::text[], $16::text[], $17::bytea[], $18::text[], $19::bytea[], $29::bool[],
                         $30::bytea[], $31::int[]) WITH ORDINALITY
        AS u(thread_id, checkpoint_ns, channel, version, type, blob, keep, delta_base, cp, o)
    WHERE (SELECT count(*) FROM lock) = cardinality($1::int8[])
), base AS (
    SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version FROM unnest(
        ARRAY(SELECT thread_id FROM nb WHERE delta_base IS NOT NULL ORDER BY o),
        ARRAY(SELECT checkpoint_ns FROM nb WHERE delta_base IS NOT NULL ORDER BY o),
        ARRAY(SELECT channel FROM nb WHERE delta_base IS NOT NULL ORDER BY o),
        ARRAY(SELECT delta_base FROM nb WHERE delta_base IS NOT NULL ORDER BY o))
        AS d(thread_id, checkpoint_ns, channel, version)
    CROSS JOIN LATERAL (SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version FROM flg_blobs b
        WHERE b.thread_id = d.thread_id AND b.checkpoint_ns = d.checkpoint_ns AND b.version = d.version
          AND b.channel = d.channel FOR KEY SHARE OF b) b
    WHERE (SELECT count(*) FROM lock) = cardinality($1::int8[])
), refs AS (
    SELECT ($2::text[])[cp] AS thread_id, ($3::text[])[cp] AS checkpoint_ns, channel, version, cp, o
    FROM unnest($32::text[], $33::bytea[], $34::int[]) WITH ORDINALITY AS r(channel, version, cp, o)
), found AS (
    SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version FROM unnest(
        ARRAY(SELECT thread_id FROM refs ORDER BY o), ARRAY(SELECT checkpoint_ns FROM refs ORDER BY o),
        ARRAY(SELECT channel FROM refs ORDER BY o), ARRAY(SELECT version FROM refs ORDER BY o))
        AS d(thread_id, checkpoint_ns, channel, version)
    CROSS JOIN LATERAL (SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version FROM flg_blobs b
        WHERE b.thread_id = d.thread_id AND b.checkpoint_ns = d.checkpoint_ns AND b.version = d.version
          AND b.channel = d.channel FOR KEY SHARE OF b) b
    WHERE (SELECT count(*) FROM lock) = cardinality($1::int8[])
), refused AS (
    SELECT nb.cp FROM nb WHERE nb.delta_base IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM base WHERE base.thread_id = nb.thread_id
                      AND base.checkpoint_ns = nb.checkpoint_ns AND base.channel = nb.channel
                      AND base.version = nb.delta_base)
      AND NOT EXISTS (SELECT 1 FROM nb n2 WHERE n2.cp = nb.cp AND n2.channel = nb.channel
                      AND n2.version = nb.delta_base)
    UNION
    SELECT refs.cp FROM refs WHERE NOT EXISTS (SELECT 1 FROM found f WHERE f.thread_id = refs.thread_id
                      AND f.checkpoint_ns = refs.checkpoint_ns AND f.channel = refs.channel
                      AND f.version = refs.version)
), ib AS (
    INSERT INTO flg_blobs (thread_id, checkpoint_ns, channel, version, delta_base, type, blob)
    SELECT thread_id, checkpoint_ns, channel, version, delta_base, type, blob FROM nb
    WHERE NOT keep AND NOT EXISTS (SELECT 1 FROM refused r WHERE r.cp = nb.cp)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO UPDATE
        SET delta_base = EXCLUDED.delta_base, type = EXCLUDED.type, blob = EXCLUDED.blob
), ik AS (
    INSERT INTO flg_blobs (thread_id, checkpoint_ns, channel, version, delta_base, type, blob)
    SELECT thread_id, checkpoint_ns, channel, version, delta_base, type, blob FROM nb
    WHERE keep AND NOT EXISTS (SELECT 1 FROM refused r WHERE r.cp = nb.cp)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
), ic AS (
    INSERT INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id,
                                 channels, versions, metadata, type, checkpoint)
    SELECT thread_id, checkpoint_ns, checkpoint_id, parent, run_id, ($12::text[])[o + 1:o + n],
           ($13::bytea[])[o + 1:o + n], meta::jsonb, type, checkpoint
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                $9::bytea[], $10::int[], $11::int[]) WITH ORDINALITY
        AS u(thread_id, checkpoint_ns, checkpoint_id, parent, run_id, meta, type, checkpoint, o, n, cp)
    WHERE (SELECT count(*) FROM lock) = cardinality($1::int8[])
      AND NOT EXISTS (SELECT 1 FROM refused r WHERE r.cp = u.cp)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE
        SET parent_checkpoint_id = EXCLUDED.parent_checkpoint_id, run_id = EXCLUDED.run_id,
            channels = EXCLUDED.channels, versions = EXCLUDED.versions, metadata = EXCLUDED.metadata,
            type = EXCLUDED.type, checkpoint = EXCLUDED.checkpoint
    RETURNING 1
), iw AS (
    INSERT INTO flg_writes AS w
        (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
    SELECT * FROM unnest($20::text[], $21::text[], $22::text[], $23::text[], $24::text[], $25::int[],
                         $26::text[], $27::text[], $28::bytea[])
    WHERE (SELECT count(*) FROM lock) = cardinality($1::int8[])
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE
        SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob, task_path = EXCLUDED.task_path
        WHERE EXCLUDED.idx < 0
)
SELECT (SELECT count(*) FROM ic), ARRAY(SELECT cp FROM refused ORDER BY cp)";

/// Whether a checkpoint is stored (imports keep one already here).
pub const CHECKPOINT_EXISTS: &str =
    "SELECT 1 FROM flg_checkpoints WHERE thread_id = $1 AND checkpoint_ns = $2 AND checkpoint_id = $3";

/// A thread's newest checkpoint id in a namespace.
pub const LATEST_ID: &str = "SELECT checkpoint_id FROM flg_checkpoints WHERE thread_id = $1 AND checkpoint_ns = $2
    ORDER BY checkpoint_id DESC LIMIT 1";

pub const SELECT_HEAD: &str = "SELECT checkpoint_id FROM flg_heads WHERE thread_id = $1 AND checkpoint_ns = $2";

/// LangGraph's rule: a regular write (idx >= 0) already stored is kept; a special write
/// (negative idx: error, interrupt, resume, scheduled) replaces the stored one.
pub const PUT_WRITES: &str = "INSERT INTO flg_writes AS w
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
    SELECT $1, $2, $3, $4, $5, idx, channel, type, blob
    FROM unnest($6::int[], $7::text[], $8::text[], $9::bytea[]) AS u(idx, channel, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE
        SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob, task_path = EXCLUDED.task_path
        WHERE EXCLUDED.idx < 0";

/// The tail of the list statement, after a `cp` CTE selecting the checkpoints: every blob
/// they need, delta bases included (keys found by a recursive walk, each blob read once), and
/// their pending writes, as one result of three row kinds. `{skip}` is empty, or
/// [`SKIP_CACHED`]: the values the caller holds are not read. A blob row (kind 1) has its
/// version and delta base in the last column, `ARRAY[version, delta_base]`.
///
/// Every blob is read by its whole primary key, one lookup per key (`CROSS JOIN LATERAL
/// (... OFFSET 0)`, which the planner cannot turn back into a join), in the first step of the
/// walk, in each step along delta bases and for the values themselves: the plan is the same
/// whatever the planner believes of a thread's size. The server keeps a generic plan for a
/// prepared statement after its fifth execution, made for a thread of average size; with joins
/// here, that plan for a database of many small threads read a long thread's blobs once per
/// key it needed (a merge join on the namespace alone): `list` of a 900-checkpoint thread took
/// the server 200 ms instead of 31 ms from the sixth call on a connection.
pub const LIST_TAIL: &str = ", need AS (
    SELECT DISTINCT cp.thread_id, cp.checkpoint_ns, u.channel, u.version
    FROM cp CROSS JOIN LATERAL unnest(cp.channels, cp.versions) AS u(channel, version){skip}
), chain AS (
    SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.delta_base FROM need n
        CROSS JOIN LATERAL (SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.delta_base
            FROM flg_blobs b WHERE b.thread_id = n.thread_id AND b.checkpoint_ns = n.checkpoint_ns
            AND b.version = n.version AND b.channel = n.channel OFFSET 0) b
    UNION
    SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.delta_base FROM chain c
        CROSS JOIN LATERAL (SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.delta_base
            FROM flg_blobs b WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
            AND b.version = c.delta_base AND b.channel = c.channel OFFSET 0) b
    WHERE c.delta_base IS NOT NULL
)
SELECT 0 AS kind, thread_id, checkpoint_ns, checkpoint_id AS a, parent_checkpoint_id AS b, type AS c,
       metadata::text AS d, checkpoint AS data, NULL::int AS idx, channels, versions
FROM cp
UNION ALL
SELECT 1, c.thread_id, c.checkpoint_ns, c.channel, NULL, b.type, NULL, b.blob, NULL, NULL, ARRAY[c.version, c.delta_base]
FROM chain c CROSS JOIN LATERAL (SELECT b.type, b.blob FROM flg_blobs b WHERE b.thread_id = c.thread_id
    AND b.checkpoint_ns = c.checkpoint_ns AND b.version = c.version AND b.channel = c.channel OFFSET 0) b
UNION ALL
SELECT 2, w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.type, w.channel, w.blob, w.idx,
       ARRAY[w.task_path], NULL
FROM flg_writes w JOIN cp ON w.thread_id = cp.thread_id AND w.checkpoint_ns = cp.checkpoint_ns
    AND w.checkpoint_id = cp.checkpoint_id";

/// `get_tuple`'s statement after its `cp` (one checkpoint): the checkpoint, the blobs of its
/// channel versions (those not left out by `{skip}`) each read by its whole primary key, as in
/// [`LIST_TAIL`], and its pending writes; the same columns as `list`'s. It does not walk delta
/// chains: a blob whose `delta_base` is set comes without its base (the caller reads again
/// with `list`'s statement). Without the recursive walk and the `DISTINCT` the server starts
/// its executor (`ExecutorStart`, most of what such a statement costs it) in less time: 12-28 us
/// less per call (docs/benchmarks.md).
pub const GET_TAIL: &str = "
SELECT 0 AS kind, thread_id, checkpoint_ns, checkpoint_id AS a, parent_checkpoint_id AS b, type AS c,
       metadata::text AS d, checkpoint AS data, NULL::int AS idx, channels, versions
FROM cp
UNION ALL
SELECT 1, cp.thread_id, cp.checkpoint_ns, u.channel, NULL, b.type, NULL, b.blob, NULL, NULL, ARRAY[u.version, b.delta_base]
FROM cp CROSS JOIN LATERAL unnest(cp.channels, cp.versions) AS u(channel, version)
    CROSS JOIN LATERAL (SELECT b.type, b.blob, b.delta_base FROM flg_blobs b WHERE b.thread_id = cp.thread_id
        AND b.checkpoint_ns = cp.checkpoint_ns AND b.version = u.version AND b.channel = u.channel OFFSET 0) b{skip}
UNION ALL
SELECT 2, w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.type, w.channel, w.blob, w.idx,
       ARRAY[w.task_path], NULL
FROM flg_writes w JOIN cp ON w.thread_id = cp.thread_id AND w.checkpoint_ns = cp.checkpoint_ns
    AND w.checkpoint_id = cp.checkpoint_id";

/// Leaves out of `need` (or `GET_TAIL`'s blobs) the (channel, version) pairs in the parallel
/// arrays `$A` and `$B`.
pub const SKIP_CACHED: &str = "
    WHERE NOT EXISTS (SELECT 1 FROM unnest($A::text[], $B::bytea[]) AS s(channel, version)
                      WHERE s.channel = u.channel AND s.version = u.version)";

pub const CP_COLUMNS: &str =
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, channels, versions";

pub const DELETE_THREAD: &[&str] = &[
    "DELETE FROM flg_writes WHERE thread_id = $1",
    "DELETE FROM flg_blobs WHERE thread_id = $1",
    "DELETE FROM flg_checkpoints WHERE thread_id = $1",
    "DELETE FROM flg_heads WHERE thread_id = $1",
];

/// The threads a `delete_for_runs` touches, locked before anything is deleted.
pub const RUN_THREADS: &str = "SELECT DISTINCT thread_id FROM flg_checkpoints WHERE run_id = ANY($1)";

/// Deletes the blobs of the threads in $1 that no remaining checkpoint needs, directly or as
/// the base of a delta it needs.
pub const COLLECT_BLOBS: &str = "WITH RECURSIVE live AS (
    SELECT DISTINCT c.thread_id, c.checkpoint_ns, u.channel, u.version
    FROM flg_checkpoints c CROSS JOIN LATERAL unnest(c.channels, c.versions) AS u(channel, version)
    WHERE c.thread_id = ANY($1)
    UNION
    SELECT b.thread_id, b.checkpoint_ns, b.channel, b.delta_base FROM flg_blobs b JOIN live l
        ON b.thread_id = l.thread_id AND b.checkpoint_ns = l.checkpoint_ns AND b.channel = l.channel
       AND b.version = l.version
    WHERE b.delta_base IS NOT NULL
)
DELETE FROM flg_blobs b WHERE b.thread_id = ANY($1) AND NOT EXISTS (
    SELECT 1 FROM live l WHERE l.thread_id = b.thread_id AND l.checkpoint_ns = b.checkpoint_ns
        AND l.channel = b.channel AND l.version = b.version)";

pub const DELETE_HEADS: &str = "DELETE FROM flg_heads WHERE thread_id = ANY($1)";

/// Maintenance of the threads whose lock keys ([`thread_lock_key`]) are in $1 (sorted): the
/// exclusive transaction-level advisory locks, which wait for every put in progress on those
/// threads (each holds the shared lock, see [`begin_writing`]) and keep new ones out until the
/// maintenance commits. Statements after it see every checkpoint committed before it.
pub const THREAD_LOCK: &str = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS k ORDER BY k";

/// The advisory lock key of a thread: FNV-1a (64 bits) of `flg:` and the thread id, the same in
/// every process and every build. Two threads sharing a key only wait for each other.
pub fn thread_lock_key(thread_id: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"flg:".iter().chain(thread_id.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// The sorted, distinct lock keys of `threads`.
pub fn thread_lock_keys<'a>(threads: impl IntoIterator<Item = &'a str>) -> Vec<i64> {
    let mut keys: Vec<i64> = threads.into_iter().map(thread_lock_key).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Opens the transaction of a batch of puts and takes the shared advisory lock of each thread
/// it writes (`keys` sorted), in one round trip: a prune, `delete_thread`, `delete_for_runs` or
/// `copy_thread` of those threads (which takes the exclusive lock, [`THREAD_LOCK`]) waits for
/// the batch to commit, and the batch waits for one in progress; a put and a prune of a thread
/// never interleave. The keys are integers, written into the text.
pub fn begin_writing(keys: &[i64]) -> String {
    if keys.is_empty() {
        return BEGIN.to_owned();
    }
    let list = keys.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    format!("{BEGIN}; SELECT pg_advisory_xact_lock_shared(k) FROM unnest(ARRAY[{list}]::int8[]) AS k ORDER BY k")
}

/// How every write transaction starts, whatever the database's or role's
/// `default_transaction_isolation`: the writes take their advisory locks first and rely on
/// each later statement seeing what committed while they waited (READ COMMITTED). Under
/// REPEATABLE READ the transaction's snapshot would be taken by the lock statement, before
/// the lock is granted, and a put could store a delta over a base a prune deleted meanwhile.
/// (The one-statement puts, which have no `BEGIN`, get the same level from the session:
/// [`super::pool::SESSION_SETTINGS`].)
pub const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// The shared advisory locks of the threads whose lock keys are in $1 (sorted), taken by a
/// batch of puts after its `BEGIN` (the pipelined form of [`begin_writing`]).
pub const SHARE_THREADS: &str = "SELECT pg_advisory_xact_lock_shared(k) FROM unnest($1::int8[]) AS k ORDER BY k";

/// The checkpoints a `keep` set needs besides itself, for LangGraph's `DeltaChannel` (the rule
/// is [`crate::checkpoint::retention`]'s): for each channel a kept checkpoint's metadata lists
/// under `counters_since_delta_snapshot` that has a version but no stored value at it, every
/// ancestor along parent pointers up to and including the nearest one holding a value of it:
/// a blob, or (schema 10 on) a value kept inside its payload, which SQL cannot read: the
/// statement stops at the `(thread, namespace, id, channel)` of the parallel arrays
/// `$stop..$stop+3`, those the caller found keeping the channel inside. `{seed}` selects the
/// kept checkpoints (thread, namespace, id); the statement returns them with those ancestors,
/// `NULL` in a fourth column, and, with the channel in it, each ancestor it walked past whose
/// row stores no value of a channel apart, so may keep it inside (see
/// `write::kept_with_delta_ancestors`). `UNION` drops a step met twice, so a chain that loops
/// still ends.
fn keep_with_delta_ancestors(seed: &str, stop: usize) -> String {
    const HOLDS_NO_VALUE: &str = "NOT EXISTS (SELECT 1 FROM flg_blobs b WHERE b.thread_id = c.thread_id
        AND b.checkpoint_ns = c.checkpoint_ns AND b.channel = {channel}
        AND b.version = c.versions[array_position(c.channels, {channel})] AND b.type <> 'empty')";
    format!(
        "WITH RECURSIVE keep0 (thread_id, checkpoint_ns, checkpoint_id) AS ({seed}),
        need (thread_id, checkpoint_ns, checkpoint_id, channel) AS (
            SELECT c.thread_id, c.checkpoint_ns, c.parent_checkpoint_id, j.key
            FROM keep0 k JOIN flg_checkpoints c ON c.thread_id = k.thread_id AND c.checkpoint_ns = k.checkpoint_ns
                AND c.checkpoint_id = k.checkpoint_id
            CROSS JOIN LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(c.metadata -> '{key}') = 'object'
                THEN c.metadata -> '{key}' ELSE '{{}}'::jsonb END) AS j(key)
            WHERE c.parent_checkpoint_id IS NOT NULL AND j.key = ANY(c.channels) AND {start}
            UNION
            SELECT c.thread_id, c.checkpoint_ns, c.parent_checkpoint_id, n.channel
            FROM need n JOIN flg_checkpoints c ON c.thread_id = n.thread_id AND c.checkpoint_ns = n.checkpoint_ns
                AND c.checkpoint_id = n.checkpoint_id
            WHERE c.parent_checkpoint_id IS NOT NULL AND {step}
                AND NOT EXISTS (SELECT 1 FROM unnest(${s0}::text[], ${s1}::text[], ${s2}::text[], ${s3}::text[])
                    AS s(t, n, i, ch) WHERE s.t = c.thread_id AND s.n = c.checkpoint_ns AND s.i = c.checkpoint_id
                    AND s.ch = n.channel)
        )
        SELECT thread_id, checkpoint_ns, checkpoint_id, NULL::text FROM keep0
        UNION SELECT thread_id, checkpoint_ns, checkpoint_id, NULL FROM need
        UNION SELECT n.thread_id, n.checkpoint_ns, n.checkpoint_id, n.channel FROM need n
            JOIN flg_checkpoints c ON c.thread_id = n.thread_id AND c.checkpoint_ns = n.checkpoint_ns
                AND c.checkpoint_id = n.checkpoint_id
            WHERE c.parent_checkpoint_id IS NOT NULL AND NOT (n.channel = ANY(c.channels))",
        key = crate::checkpoint::retention::DELTA_COUNTERS_KEY,
        start = HOLDS_NO_VALUE.replace("{channel}", "j.key"),
        step = HOLDS_NO_VALUE.replace("{channel}", "n.channel"),
        s0 = stop,
        s1 = stop + 1,
        s2 = stop + 2,
        s3 = stop + 3,
    )
}

/// `prune(keep_latest)`: the newest checkpoint of each namespace of the threads in $1, with
/// the ancestors their delta channels need (stopping at those of $2..$5).
pub fn keep_latest_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        keep_with_delta_ancestors(
            "SELECT DISTINCT ON (thread_id, checkpoint_ns) thread_id, checkpoint_ns, checkpoint_id
             FROM flg_checkpoints WHERE thread_id = ANY($1) ORDER BY thread_id, checkpoint_ns, checkpoint_id DESC",
            2,
        )
    })
}

/// `delete_for_runs`: every checkpoint of the threads in $2 not made by the runs in $1, with
/// the ancestors their delta channels need (which a deleted run may have made), stopping at
/// those of $3..$6.
pub fn keep_other_runs_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        keep_with_delta_ancestors(
            "SELECT thread_id, checkpoint_ns, checkpoint_id FROM flg_checkpoints
             WHERE thread_id = ANY($2) AND (run_id IS NULL OR NOT run_id = ANY($1))",
            3,
        )
    })
}

/// The payloads of the checkpoints of the parallel arrays $1, $2, $3 (thread, namespace, id).
pub const PAYLOADS: &str = "SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.type, c.checkpoint
    FROM flg_checkpoints c JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(t, n, i)
        ON c.thread_id = k.t AND c.checkpoint_ns = k.n AND c.checkpoint_id = k.i";

/// A key in the kept set passed as $2, $3, $4 (parallel arrays of thread, namespace, id).
const IN_KEPT: &str = "EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[], $4::text[]) AS k(t, n, i)
    WHERE k.t = {a}.thread_id AND k.n = {a}.checkpoint_ns AND k.i = {a}.checkpoint_id)";

/// `prune(keep_latest)` of the threads in $1: deletes the checkpoints outside the kept set and
/// every write not against a kept checkpoint.
pub fn prune_keep_sql() -> &'static [String] {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    SQL.get_or_init(|| {
        vec![
            format!(
                "DELETE FROM flg_writes w WHERE w.thread_id = ANY($1) AND NOT {}",
                IN_KEPT.replace("{a}", "w")
            ),
            format!(
                "DELETE FROM flg_checkpoints c WHERE c.thread_id = ANY($1) AND NOT {}",
                IN_KEPT.replace("{a}", "c")
            ),
        ]
    })
}

/// `delete_for_runs` of the runs in $1: deletes their checkpoints outside the kept set, with
/// their writes.
pub fn delete_runs_sql() -> &'static [String] {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    SQL.get_or_init(|| {
        vec![
            format!(
                "DELETE FROM flg_writes w USING flg_checkpoints c WHERE c.run_id = ANY($1)
                    AND w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns
                    AND w.checkpoint_id = c.checkpoint_id AND NOT {}",
                IN_KEPT.replace("{a}", "c")
            ),
            format!(
                "DELETE FROM flg_checkpoints c WHERE c.run_id = ANY($1) AND NOT {}",
                IN_KEPT.replace("{a}", "c")
            ),
        ]
    })
}

/// For time-based retention: each thread's newest checkpoint id, and the newest time one of
/// its checkpoints was stored (milliseconds since the Unix epoch).
pub const THREAD_TIMES: &str = "SELECT thread_id, max(checkpoint_id),
    (extract(epoch FROM max(stored_at)) * 1000)::bigint FROM flg_checkpoints GROUP BY thread_id";

/// [`THREAD_TIMES`] of the threads in $1 only, read again once they are locked.
pub const THREAD_TIMES_OF: &str = "SELECT thread_id, max(checkpoint_id),
    (extract(epoch FROM max(stored_at)) * 1000)::bigint FROM flg_checkpoints WHERE thread_id = ANY($1)
    GROUP BY thread_id";

pub const THREAD_IDS: &str = "SELECT DISTINCT thread_id FROM flg_checkpoints ORDER BY thread_id";

/// Delta blobs whose base version is not stored (the database was modified by hand).
pub const BROKEN_CHAINS: &str = "SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.delta_base
    FROM flg_blobs b WHERE b.delta_base IS NOT NULL AND NOT EXISTS (SELECT 1 FROM flg_blobs x
        WHERE x.thread_id = b.thread_id AND x.checkpoint_ns = b.checkpoint_ns AND x.channel = b.channel
          AND x.version = b.delta_base)
    ORDER BY 1, 2, 3, 4 LIMIT 100";

pub const PRUNE_DELETE: &[&str] = &[
    "DELETE FROM flg_writes WHERE thread_id = ANY($1)",
    "DELETE FROM flg_blobs WHERE thread_id = ANY($1)",
    "DELETE FROM flg_checkpoints WHERE thread_id = ANY($1)",
];

pub const COPY_THREAD: &[&str] = &[
    "INSERT INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, channels,
        versions, metadata, type, checkpoint, stored_at)
     SELECT $2, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, channels, versions, metadata, type, checkpoint,
        stored_at
     FROM flg_checkpoints WHERE thread_id = $1 ON CONFLICT DO NOTHING",
    "INSERT INTO flg_blobs (thread_id, checkpoint_ns, channel, version, delta_base, type, blob)
     SELECT $2, checkpoint_ns, channel, version, delta_base, type, blob FROM flg_blobs WHERE thread_id = $1
     ON CONFLICT DO NOTHING",
    "INSERT INTO flg_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, task_path, type, blob)
     SELECT $2, checkpoint_ns, checkpoint_id, task_id, idx, channel, task_path, type, blob FROM flg_writes
     WHERE thread_id = $1 ON CONFLICT DO NOTHING",
];

pub const STORAGE_STATS: &str = "SELECT
    (SELECT count(*) FROM flg_checkpoints),
    (SELECT count(*) FROM flg_blobs),
    (SELECT count(*) FROM flg_blobs WHERE delta_base IS NOT NULL),
    (SELECT count(*) FROM flg_writes),
    (SELECT coalesce(sum(octet_length(checkpoint)), 0) FROM flg_checkpoints)
      + (SELECT coalesce(sum(octet_length(blob)), 0) FROM flg_blobs)
      + (SELECT coalesce(sum(octet_length(blob)), 0) FROM flg_writes)";

/// Bytes on disk of the tables and their indexes.
pub const TABLE_BYTES: &str = "SELECT pg_total_relation_size('flg_checkpoints') + pg_total_relation_size('flg_blobs')
    + pg_total_relation_size('flg_writes') + pg_total_relation_size('flg_heads')";

/// The ancestors of a checkpoint, nearest first, walking parent pointers, at most $4 of them
/// (the caller pages on from the last one): for each, whether it holds a stored value of each
/// channel in $5 (the value's version, or NULL), and, when its `channels` lack one of $5 (which
/// its payload may then keep inside, schema 10 on), its payload's type and bytes.
pub const ANCESTORS: &str = "WITH RECURSIVE walk AS (
    SELECT c.checkpoint_id, c.parent_checkpoint_id, c.channels, c.versions, 0 AS depth
    FROM flg_checkpoints c WHERE c.thread_id = $1 AND c.checkpoint_ns = $2 AND c.checkpoint_id = $3
    UNION ALL
    SELECT c.checkpoint_id, c.parent_checkpoint_id, c.channels, c.versions, w.depth + 1
    FROM walk w JOIN flg_checkpoints c ON c.thread_id = $1 AND c.checkpoint_ns = $2
        AND c.checkpoint_id = w.parent_checkpoint_id
    WHERE w.depth < $4
)
SELECT w.checkpoint_id, w.parent_checkpoint_id, w.depth,
    ARRAY(SELECT (SELECT b.version FROM flg_blobs b
                  WHERE b.thread_id = $1 AND b.checkpoint_ns = $2 AND b.channel = ch
                    AND b.version = w.versions[array_position(w.channels, ch)] AND b.type <> 'empty')
          FROM unnest($5::text[]) WITH ORDINALITY AS q(ch, i) ORDER BY i),
    k.type, k.checkpoint
FROM walk w LEFT JOIN LATERAL (SELECT c.type, c.checkpoint FROM flg_checkpoints c
    WHERE c.thread_id = $1 AND c.checkpoint_ns = $2 AND c.checkpoint_id = w.checkpoint_id
      AND NOT ($5::text[] <@ w.channels) OFFSET 0) k ON TRUE
ORDER BY w.depth";

/// The writes to channels $4 of checkpoints $3, and the listed blob versions.
pub const HISTORY_WRITES: &str = "SELECT checkpoint_id, task_id, channel, type, blob, task_path, idx FROM flg_writes
    WHERE thread_id = $1 AND checkpoint_ns = $2 AND checkpoint_id = ANY($3) AND channel = ANY($4)";

/// The blobs of the listed (channel, version) pairs and every delta base they extend.
pub const SEED_BLOBS: &str = "WITH RECURSIVE chain AS (
    SELECT b.channel, b.version, b.delta_base FROM flg_blobs b
    JOIN unnest($3::text[], $4::bytea[]) AS q(channel, version) ON b.channel = q.channel AND b.version = q.version
    WHERE b.thread_id = $1 AND b.checkpoint_ns = $2
    UNION
    SELECT b.channel, b.version, b.delta_base FROM flg_blobs b JOIN chain c
        ON b.thread_id = $1 AND b.checkpoint_ns = $2 AND b.channel = c.channel AND b.version = c.delta_base
)
SELECT b.channel, b.version, b.delta_base, b.type, b.blob FROM chain c JOIN flg_blobs b
    ON b.thread_id = $1 AND b.checkpoint_ns = $2 AND b.channel = c.channel AND b.version = c.version";
