-- Soft-delete columns of the sample schema (connector setting:
-- soft_delete = { service_history = "deleted_at", contracts = "is_deleted" }).
-- A set deleted_at / a true is_deleted means the application deleted the row; it also
-- sets updated_at then, so an incremental read picks the deletion up.
ALTER TABLE service_history ADD COLUMN IF NOT EXISTS deleted_at TIMESTAMPTZ;
ALTER TABLE contracts ADD COLUMN IF NOT EXISTS is_deleted BOOLEAN NOT NULL DEFAULT false;
