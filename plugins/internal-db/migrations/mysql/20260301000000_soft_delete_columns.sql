-- Soft-delete columns of the sample schema (connector setting:
-- soft_delete = { service_history = "deleted_at", contracts = "is_deleted" }).
-- A set deleted_at / a true is_deleted means the application deleted the row; it also
-- sets updated_at then, so an incremental read picks the deletion up.
-- No IF NOT EXISTS (MySQL 8 lacks it for ADD COLUMN): sqlx records this version in
-- _sqlx_migrations, so it runs once per database.
ALTER TABLE service_history ADD COLUMN deleted_at DATETIME(6) NULL;
ALTER TABLE contracts ADD COLUMN is_deleted BOOLEAN NOT NULL DEFAULT FALSE;
