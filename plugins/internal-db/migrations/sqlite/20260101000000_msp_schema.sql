-- Tributary internal-db schema, SQLite flavour.
-- Timestamps are TEXT in the canonical form YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC), so that
-- lexicographic order is time order; money is TEXT holding an exact decimal ("1234.50").
CREATE TABLE IF NOT EXISTS client_profiles (
    id                     INTEGER PRIMARY KEY,
    company_name           TEXT    NOT NULL,
    industry               TEXT    NOT NULL,
    employee_count         INTEGER NOT NULL,
    address_line           TEXT    NOT NULL,
    city                   TEXT    NOT NULL,
    region                 TEXT    NOT NULL,
    postal_code            TEXT    NOT NULL,
    country                TEXT    NOT NULL,
    phone                  TEXT    NOT NULL,
    email_domain           TEXT    NOT NULL,
    service_tier           TEXT    NOT NULL,
    account_manager        TEXT    NOT NULL,
    status                 TEXT    NOT NULL,
    superops_account_id    TEXT,
    quickbooks_customer_id TEXT,
    created_at             TEXT    NOT NULL,
    updated_at             TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS client_profiles_cursor ON client_profiles (updated_at, id);

CREATE TABLE IF NOT EXISTS service_history (
    id            INTEGER PRIMARY KEY,
    client_id     INTEGER NOT NULL REFERENCES client_profiles (id),
    ticket_ref    TEXT    NOT NULL,
    technician    TEXT    NOT NULL,
    category      TEXT    NOT NULL,
    priority      TEXT    NOT NULL,
    opened_at     TEXT    NOT NULL,
    resolved_at   TEXT,
    hours_worked  TEXT    NOT NULL,
    billable      INTEGER NOT NULL,
    resolution    TEXT,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS service_history_cursor ON service_history (updated_at, id);
CREATE INDEX IF NOT EXISTS service_history_client ON service_history (client_id);

CREATE TABLE IF NOT EXISTS satisfaction_scores (
    id             INTEGER PRIMARY KEY,
    client_id      INTEGER NOT NULL REFERENCES client_profiles (id),
    survey_date    TEXT    NOT NULL,
    overall        INTEGER NOT NULL,
    responsiveness INTEGER NOT NULL,
    quality        INTEGER NOT NULL,
    communication  INTEGER NOT NULL,
    nps            INTEGER NOT NULL,
    comment        TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS satisfaction_scores_cursor ON satisfaction_scores (updated_at, id);
CREATE INDEX IF NOT EXISTS satisfaction_scores_client ON satisfaction_scores (client_id);

CREATE TABLE IF NOT EXISTS communication_engagement (
    id                    INTEGER PRIMARY KEY,
    client_id             INTEGER NOT NULL REFERENCES client_profiles (id),
    channel               TEXT    NOT NULL,
    direction             TEXT    NOT NULL,
    occurred_at           TEXT    NOT NULL,
    response_time_minutes INTEGER,
    subject               TEXT    NOT NULL,
    created_at            TEXT    NOT NULL,
    updated_at            TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS communication_engagement_cursor ON communication_engagement (updated_at, id);
CREATE INDEX IF NOT EXISTS communication_engagement_client ON communication_engagement (client_id);

CREATE TABLE IF NOT EXISTS contracts (
    id            INTEGER PRIMARY KEY,
    client_id     INTEGER NOT NULL REFERENCES client_profiles (id),
    contract_type TEXT    NOT NULL,
    monthly_value TEXT    NOT NULL,
    currency      TEXT    NOT NULL,
    term_months   INTEGER NOT NULL,
    start_date    TEXT    NOT NULL,
    renewal_date  TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    auto_renew    INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS contracts_cursor ON contracts (updated_at, id);
CREATE INDEX IF NOT EXISTS contracts_client ON contracts (client_id);
