-- The outbox relay polls; writers no longer notify it.
--
-- 0001 had every transaction that inserts into outbox_events run pg_notify('outbox_events', '') so the relay woke at
-- once. A NOTIFY is not free at commit: PostgreSQL takes one lock for the whole server before queuing the
-- notification and holds it through the commit's WAL flush, so every outbox writer (every booking, payment and
-- flight change, whatever its rows) committed one after another. pgbench, 32 clients: 4,372 tps updating 8 rows
-- without it, 2,513 with it; 1,582 against 1,102 on a single row. The relay now polls instead, with one cheap
-- index probe (outbox_events_unpublished_idx) per interval while the outbox is empty.
DROP TRIGGER outbox_events_notify ON outbox_events;
DROP FUNCTION outbox_notify();
