"""The PostgreSQL ledger's schema: versioned steps, and the functions that keep the
money rules server-side.

A hold and a settlement are each one function call (one round trip, one implicit
transaction). The hold's core is one conditional `UPDATE accounts ... WHERE balance -
held >= amount RETURNING`: concurrent holds on one account, from any number of router
instances, queue on the account's row lock and each sees the others' committed `held`,
so none can spend what another holds (I3). Settlement locks the hold row (`FOR
UPDATE`), so two instances settling one request bill it once (I4).

`migrate` runs the steps a database has not run, under a transaction-scoped advisory
lock: instances starting at once run each step exactly once, in order.
"""

from __future__ import annotations

import psycopg

# Any constant shared by every instance: the advisory lock that serialises migrations.
MIGRATION_LOCK = 0x61757261  # "aura"

STEPS: tuple[str, ...] = ("""
CREATE TABLE accounts (
    id TEXT PRIMARY KEY, balance BIGINT NOT NULL DEFAULT 0, held BIGINT NOT NULL DEFAULT 0,
    spent BIGINT NOT NULL DEFAULT 0, created_at DOUBLE PRECISION NOT NULL);
CREATE TABLE entries (
    seq BIGSERIAL PRIMARY KEY, account TEXT NOT NULL, kind TEXT NOT NULL,
    amount BIGINT NOT NULL, held_delta BIGINT NOT NULL, request_id TEXT,
    balance_after BIGINT NOT NULL, reason TEXT, at DOUBLE PRECISION NOT NULL);
CREATE INDEX entries_by_account ON entries (account, seq);
CREATE TABLE holds (
    request_id TEXT PRIMARY KEY, account TEXT NOT NULL, amount BIGINT NOT NULL,
    deadline DOUBLE PRECISION NOT NULL, settled BOOLEAN NOT NULL DEFAULT FALSE,
    captured BIGINT, released BIGINT, created_at DOUBLE PRECISION NOT NULL, key_id TEXT,
    owner TEXT, model TEXT NOT NULL DEFAULT '', provider TEXT NOT NULL DEFAULT '',
    ck_input BIGINT NOT NULL DEFAULT 0, ck_output BIGINT NOT NULL DEFAULT 0,
    ck_cache_read BIGINT NOT NULL DEFAULT 0, ck_cache_write BIGINT NOT NULL DEFAULT 0,
    ck_reasoning BIGINT NOT NULL DEFAULT 0, ck_cost BIGINT NOT NULL DEFAULT 0,
    ck_at DOUBLE PRECISION, seq BIGSERIAL);
CREATE INDEX open_holds ON holds (seq) WHERE NOT settled;
CREATE TABLE key_spend (key_id TEXT PRIMARY KEY, spent BIGINT NOT NULL);
CREATE TABLE usage (
    request_id TEXT PRIMARY KEY, account TEXT NOT NULL, model TEXT NOT NULL,
    provider TEXT NOT NULL, input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL, cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL, reported BOOLEAN NOT NULL,
    cost_micros BIGINT NOT NULL, at DOUBLE PRECISION NOT NULL,
    overrun_micros BIGINT NOT NULL DEFAULT 0, recovered BOOLEAN NOT NULL DEFAULT FALSE);
CREATE INDEX usage_by_account ON usage (account, at);
CREATE INDEX usage_by_time ON usage (at, request_id);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE, label TEXT, models TEXT, rpm INTEGER,
    spend_cap_micros BIGINT, expires_at DOUBLE PRECISION, revoked_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL, seq BIGSERIAL);
CREATE INDEX keys_by_account ON api_keys (account);
CREATE TABLE instances (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL, lease_until DOUBLE PRECISION NOT NULL);
CREATE TABLE idempotency (
    account TEXT NOT NULL, key TEXT NOT NULL, body_hash TEXT NOT NULL,
    request_id TEXT NOT NULL, done BOOLEAN NOT NULL DEFAULT FALSE, status INTEGER,
    content_type TEXT, response BYTEA, created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account, key));
CREATE INDEX idempotency_by_request ON idempotency (request_id) WHERE NOT done;

CREATE FUNCTION aura_hold(p_account TEXT, p_request TEXT, p_amount BIGINT,
                          p_deadline DOUBLE PRECISION, p_at DOUBLE PRECISION, p_key TEXT,
                          p_cap BIGINT, p_owner TEXT, p_model TEXT,
                          OUT outcome TEXT, OUT balance BIGINT, OUT held BIGINT,
                          OUT room BIGINT) LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM holds WHERE request_id = p_request) THEN
        outcome := 'duplicate'; RETURN;
    END IF;
    UPDATE accounts a SET held = a.held + p_amount
        WHERE a.id = p_account AND a.balance - a.held >= p_amount
        RETURNING a.balance, a.held INTO balance, held;
    IF NOT FOUND THEN
        SELECT a.balance - a.held INTO room FROM accounts a WHERE a.id = p_account;
        IF room IS NOT NULL OR p_amount > 0 THEN
            outcome := 'insufficient'; room := COALESCE(room, 0); RETURN;
        END IF;
        INSERT INTO accounts (id, created_at) VALUES (p_account, p_at)
            ON CONFLICT (id) DO NOTHING;
        SELECT a.balance, a.held INTO balance, held FROM accounts a WHERE a.id = p_account;
    END IF;
    IF p_key IS NOT NULL AND p_cap IS NOT NULL THEN
        INSERT INTO key_spend AS k (key_id, spent) VALUES (p_key, p_amount)
            ON CONFLICT (key_id) DO UPDATE SET spent = k.spent + excluded.spent
                WHERE k.spent + excluded.spent <= p_cap
            RETURNING k.spent INTO room;
        IF NOT FOUND OR room > p_cap THEN
            -- Over the key's cap: give the account its room back (same transaction).
            IF FOUND THEN
                UPDATE key_spend SET spent = spent - p_amount WHERE key_id = p_key;
            END IF;
            UPDATE accounts a SET held = a.held - p_amount WHERE a.id = p_account;
            SELECT p_cap - k.spent INTO room FROM key_spend k WHERE k.key_id = p_key;
            outcome := 'cap'; room := GREATEST(COALESCE(room, p_cap), 0); RETURN;
        END IF;
    END IF;
    INSERT INTO holds (request_id, account, amount, deadline, created_at, key_id, owner,
                       model)
        VALUES (p_request, p_account, p_amount, p_deadline, p_at,
                CASE WHEN p_cap IS NULL THEN NULL ELSE p_key END, p_owner, p_model);
    INSERT INTO entries (account, kind, amount, held_delta, request_id, balance_after, at)
        VALUES (p_account, 'hold', 0, p_amount, p_request, balance, p_at);
    outcome := 'ok';
END $$;

CREATE FUNCTION aura_settle(p_request TEXT, p_cost BIGINT, p_model TEXT, p_provider TEXT,
                            p_input BIGINT, p_output BIGINT, p_cache_read BIGINT,
                            p_cache_write BIGINT, p_reasoning BIGINT, p_reported BOOLEAN,
                            p_record_at DOUBLE PRECISION, p_recovered BOOLEAN,
                            p_at DOUBLE PRECISION,
                            OUT outcome TEXT, OUT captured BIGINT, OUT released BIGINT,
                            OUT balance BIGINT, OUT held BIGINT) LANGUAGE plpgsql AS $$
DECLARE
    h holds%ROWTYPE;
BEGIN
    SELECT * INTO h FROM holds WHERE request_id = p_request FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'unknown'; RETURN;
    END IF;
    IF h.settled THEN
        SELECT a.balance, a.held INTO balance, held FROM accounts a WHERE a.id = h.account;
        outcome := 'replay'; captured := h.captured; released := h.released; RETURN;
    END IF;
    captured := LEAST(p_cost, h.amount);
    released := h.amount - captured;
    UPDATE accounts a SET balance = a.balance - captured, held = a.held - h.amount,
                          spent = a.spent + captured
        WHERE a.id = h.account RETURNING a.balance, a.held INTO balance, held;
    IF captured > 0 THEN
        INSERT INTO entries (account, kind, amount, held_delta, request_id, balance_after, at)
            VALUES (h.account, 'capture', -captured, -captured, p_request, balance, p_at);
    END IF;
    IF released > 0 THEN
        INSERT INTO entries (account, kind, amount, held_delta, request_id, balance_after, at)
            VALUES (h.account, 'release', 0, -released, p_request, balance, p_at);
        IF h.key_id IS NOT NULL THEN
            UPDATE key_spend SET spent = spent - released WHERE key_id = h.key_id;
        END IF;
    END IF;
    UPDATE holds SET settled = TRUE, captured = aura_settle.captured,
                     released = aura_settle.released
        WHERE request_id = p_request;
    INSERT INTO usage (request_id, account, model, provider, input_tokens, output_tokens,
                       cache_read_tokens, cache_write_tokens, reasoning_tokens, reported,
                       cost_micros, at, overrun_micros, recovered)
        VALUES (p_request, h.account, p_model, p_provider, p_input, p_output, p_cache_read,
                p_cache_write, p_reasoning, p_reported, captured, p_record_at,
                p_cost - captured, p_recovered);
    outcome := 'ok';
END $$;

CREATE FUNCTION aura_recover(p_request TEXT, p_at DOUBLE PRECISION,
                             OUT outcome TEXT, OUT captured BIGINT, OUT released BIGINT,
                             OUT balance BIGINT, OUT held BIGINT) LANGUAGE plpgsql AS $$
DECLARE
    h holds%ROWTYPE;
BEGIN
    SELECT * INTO h FROM holds WHERE request_id = p_request;
    IF NOT FOUND THEN
        outcome := 'unknown'; RETURN;
    END IF;
    IF h.ck_at IS NULL THEN  -- nothing was checkpointed: released at cost 0
        h.provider := ''; h.ck_input := 0; h.ck_output := 0; h.ck_cache_read := 0;
        h.ck_cache_write := 0; h.ck_reasoning := 0; h.ck_cost := 0;
    END IF;
    SELECT * INTO outcome, captured, released, balance, held FROM aura_settle(
        p_request, h.ck_cost, h.model, h.provider, h.ck_input, h.ck_output,
        h.ck_cache_read, h.ck_cache_write, h.ck_reasoning, FALSE, p_at, TRUE, p_at);
    IF outcome = 'ok' THEN  -- the request is dead: its Idempotency-Key is free again
        DELETE FROM idempotency WHERE request_id = p_request AND NOT done;
    END IF;
END $$;
""",
# 2: the outbox (docs/integration.md). Every usage row queues one event per configured
# derived sink in the transaction that inserts it (a settlement or a recovery); the body
# of a derived event is built from that row when it is shipped.
"""
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, sink TEXT NOT NULL,
    request_id TEXT NOT NULL, account TEXT NOT NULL, body BYTEA,
    created_at DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_at DOUBLE PRECISION NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT);
CREATE INDEX outbox_queues ON outbox (sink, account, seq) WHERE state = 'pending';
CREATE INDEX outbox_due ON outbox (next_at) WHERE state = 'pending';
CREATE TABLE outbox_sinks (sink TEXT PRIMARY KEY);
CREATE FUNCTION aura_usage_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (event_id, sink, request_id, account, created_at, next_at)
        SELECT s.sink || '.' || NEW.request_id, s.sink, NEW.request_id, NEW.account,
               NEW.at, NEW.at FROM outbox_sinks s
        ON CONFLICT (event_id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER usage_outbox AFTER INSERT ON usage
    FOR EACH ROW EXECUTE FUNCTION aura_usage_outbox();
""",
# 3: the provider store (router/provider_store.py, router/ledger/postgres/providers.py):
# providers managed at run time, their keys sealed; every change bumps the version that
# instances poll.
"""
CREATE TABLE providers (
    name TEXT PRIMARY KEY, settings TEXT NOT NULL, sealed_keys TEXT,
    key_count INTEGER NOT NULL, updated_at DOUBLE PRECISION NOT NULL);
CREATE TABLE providers_version (
    id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
INSERT INTO providers_version (id, version) VALUES (1, 0);
""",
# 4: account listings (`AccountBook.listing`, router/ledger/listing.py) read ids in code
# point order, whatever collation the database was created with: an index in the "C"
# collation serves that order and the range a prefix covers (the primary key's index is
# in the database's collation, en_US.UTF-8 and the like order otherwise).
"""
CREATE INDEX accounts_id_bytes ON accounts (id COLLATE "C");
""",
# 5: usage added up by time (`usage_totals`, router/ledger/postgres/ledger.py): a time
# range with every column the totals read, from the index alone (an index-only scan:
# a day of 325 000 rows in ~0.12 s instead of ~0.25 s from the table, an hour in ~6 ms
# instead of ~25 ms, measured here). Built in the step's transaction: writes to `usage`
# wait for it, once, at the upgrade.
"""
CREATE INDEX usage_totals ON usage (at) INCLUDE (model, cost_micros, input_tokens,
                                                  output_tokens);
""")


def migrate(conn: psycopg.Connection) -> None:
    """Run the steps this database has not run, each in its own transaction under the
    migration lock, recorded in `aura_schema` (the lock covers creating that table too:
    two `CREATE TABLE IF NOT EXISTS` at once can collide)."""
    for version, step in enumerate(STEPS, start=1):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS aura_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM aura_schema").fetchone()
            if row is not None and row[0] is not None and row[0] >= version:
                continue
            conn.execute(step)
            conn.execute("INSERT INTO aura_schema (version) VALUES (%s)", (version,))
