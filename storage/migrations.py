"""Numbered schema migrations. Append new ones; never edit one that has shipped.

Each migration runs in its own transaction together with the version bump, so a crash
mid-migration leaves the database at the previous version.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: chats, subscriptions, rules, rule state, outbox, recent quotes
    """
    CREATE TABLE chats (
        id INTEGER PRIMARY KEY,
        platform TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'private',
        active INTEGER NOT NULL DEFAULT 1,
        muted_until TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (platform, chat_id)
    );
    CREATE TABLE subscriptions (
        chat INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        symbol TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (chat, symbol)
    );
    CREATE TABLE rules (
        id INTEGER PRIMARY KEY,
        chat INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        created_by TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX rules_by_chat ON rules (chat, active);
    CREATE TABLE rule_state (
        rule INTEGER PRIMARY KEY REFERENCES rules(id) ON DELETE CASCADE,
        state TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        rule INTEGER REFERENCES rules(id) ON DELETE SET NULL,
        chat INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        last_error TEXT,
        delivered_at TEXT,
        message_id TEXT
    );
    CREATE INDEX outbox_pending ON outbox (status, chat, id);
    CREATE TABLE quotes (
        symbol TEXT NOT NULL,
        ts TEXT NOT NULL,
        last REAL NOT NULL,
        bid REAL,
        ask REAL,
        source TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (symbol, ts)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta (key, value) VALUES ('rules_revision', 0);
    CREATE TRIGGER rules_insert AFTER INSERT ON rules
        BEGIN UPDATE meta SET value = value + 1 WHERE key = 'rules_revision'; END;
    CREATE TRIGGER rules_update AFTER UPDATE ON rules
        BEGIN UPDATE meta SET value = value + 1 WHERE key = 'rules_revision'; END;
    CREATE TRIGGER rules_delete AFTER DELETE ON rules
        BEGIN UPDATE meta SET value = value + 1 WHERE key = 'rules_revision'; END;
    """,
    # 2: a subscription change is a change of what the service watches
    """
    CREATE TRIGGER subscriptions_insert AFTER INSERT ON subscriptions
        BEGIN UPDATE meta SET value = value + 1 WHERE key = 'rules_revision'; END;
    CREATE TRIGGER subscriptions_delete AFTER DELETE ON subscriptions
        BEGIN UPDATE meta SET value = value + 1 WHERE key = 'rules_revision'; END;
    """,
    # 3: per-chat choice of charts with alerts (/charts on|off)
    """
    ALTER TABLE chats ADD COLUMN charts INTEGER NOT NULL DEFAULT 1;
    """,
    # 4: recent quotes are pruned by time
    """
    CREATE INDEX quotes_by_ts ON quotes (ts);
    """,
    # 5: a log of rule changes, one row per revision (the revision is now its last row): the
    # rule a change touched, or a subscription; a store that had changes starts the log with
    # one 'start' row at its revision (what came before is not known). The last 10,000 to
    # 10,999 rows are kept: the service applies only what changed since it last looked.
    """
    CREATE TABLE rule_changes (
        revision INTEGER PRIMARY KEY,
        rule INTEGER,
        kind TEXT NOT NULL
    );
    INSERT INTO rule_changes (revision, rule, kind)
        SELECT value, NULL, 'start' FROM meta WHERE key = 'rules_revision' AND value > 0;
    DELETE FROM meta WHERE key = 'rules_revision';
    DROP TRIGGER rules_insert;
    DROP TRIGGER rules_update;
    DROP TRIGGER rules_delete;
    DROP TRIGGER subscriptions_insert;
    DROP TRIGGER subscriptions_delete;
    CREATE TRIGGER rules_insert AFTER INSERT ON rules
        BEGIN INSERT INTO rule_changes (rule, kind) VALUES (NEW.id, 'rule'); END;
    CREATE TRIGGER rules_update AFTER UPDATE ON rules
        BEGIN INSERT INTO rule_changes (rule, kind) VALUES (NEW.id, 'rule'); END;
    CREATE TRIGGER rules_delete AFTER DELETE ON rules
        BEGIN INSERT INTO rule_changes (rule, kind) VALUES (OLD.id, 'rule'); END;
    CREATE TRIGGER subscriptions_insert AFTER INSERT ON subscriptions
        BEGIN INSERT INTO rule_changes (kind) VALUES ('subscription'); END;
    CREATE TRIGGER subscriptions_delete AFTER DELETE ON subscriptions
        BEGIN INSERT INTO rule_changes (kind) VALUES ('subscription'); END;
    CREATE TRIGGER rule_changes_prune AFTER INSERT ON rule_changes
        WHEN NEW.revision % 1000 = 0
        BEGIN DELETE FROM rule_changes WHERE revision <= NEW.revision - 10000; END;
    """,
    # 6: alert actions: a rule snoozed or muted until a time (a snooze ends at snoozed_until;
    # a muted rule's is 9999-01-01), the buttons already used on each alert message (their
    # one-letter codes), and per-installation secrets (the key that signs button data)
    """
    ALTER TABLE rules ADD COLUMN snoozed_until TEXT;
    ALTER TABLE outbox ADD COLUMN actions TEXT NOT NULL DEFAULT '';
    CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 7: daily digests: one setting per chat (its local time, IANA zone, weekdays only or
    # not; `since` when it was set; `last_day`, the chat's local date of the last digest put
    # in the outbox, kept when the digest is turned off and on); a digest waits in the
    # outbox as a row of kind 'digest' beside the alerts (kind 'alert')
    """
    ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'alert';
    CREATE TABLE digests (
        chat INTEGER PRIMARY KEY REFERENCES chats(id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        zone TEXT NOT NULL,
        weekdays_only INTEGER NOT NULL DEFAULT 0,
        active INTEGER NOT NULL DEFAULT 1,
        since TEXT NOT NULL,
        last_day TEXT
    );
    """,
    # 8: webhooks. An outgoing webhook is a chat of its own (platform 'webhook') that hears the
    # alerts of the chat that added it (its owner); its URL and signing secret live here. A
    # chat's inbound secret is the key of its TradingView webhook URL.
    """
    CREATE TABLE webhooks (
        chat INTEGER PRIMARY KEY REFERENCES chats(id) ON DELETE CASCADE,
        owner INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    );
    CREATE INDEX webhooks_by_owner ON webhooks (owner, active);
    CREATE TABLE inbound (
        chat INTEGER PRIMARY KEY REFERENCES chats(id) ON DELETE CASCADE,
        secret TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    """,
)
