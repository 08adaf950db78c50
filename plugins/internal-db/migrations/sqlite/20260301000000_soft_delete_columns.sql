-- Soft-delete columns of the sample schema (connector setting:
-- soft_delete = { service_history = "deleted_at", contracts = "is_deleted" }).
-- A set deleted_at / a true is_deleted means the application deleted the row; it also
-- sets updated_at then, so an incremental read picks the deletion up.
-- SQLite has no ADD COLUMN IF NOT EXISTS: sqlx records this version in
-- _sqlx_migrations, so it runs once per database.
ALTER TABLE service_history ADD COLUMN deleted_at TEXT;
ALTER TABLE contracts ADD COLUMN is_deleted INTEGER NOT NULL DEFAULT 0;
