-- Tributary internal-db schema, PostgreSQL flavour.
CREATE TABLE IF NOT EXISTS client_profiles (
    id                     BIGINT       PRIMARY KEY,
    company_name           TEXT         NOT NULL,
    industry               TEXT         NOT NULL,
    employee_count         INTEGER      NOT NULL,
    address_line           TEXT         NOT NULL,
    city                   TEXT         NOT NULL,
    region                 TEXT         NOT NULL,
    postal_code            TEXT         NOT NULL,
    country                TEXT         NOT NULL,
    phone                  TEXT         NOT NULL,
    email_domain           TEXT         NOT NULL,
    service_tier           TEXT         NOT NULL,
    account_manager        TEXT         NOT NULL,
    status                 TEXT         NOT NULL,
    superops_account_id    TEXT,
    quickbooks_customer_id TEXT,
    created_at             TIMESTAMPTZ  NOT NULL,
    updated_at             TIMESTAMPTZ  NOT NULL
);
CREATE INDEX IF NOT EXISTS client_profiles_cursor ON client_profiles (updated_at, id);

CREATE TABLE IF NOT EXISTS service_history (
    id            BIGINT        PRIMARY KEY,
    client_id     BIGINT        NOT NULL REFERENCES client_profiles (id),
    ticket_ref    TEXT          NOT NULL,
    technician    TEXT          NOT NULL,
    category      TEXT          NOT NULL,
    priority      TEXT          NOT NULL,
    opened_at     TIMESTAMPTZ   NOT NULL,
    resolved_at   TIMESTAMPTZ,
    hours_worked  NUMERIC(10,2) NOT NULL,
    billable      BOOLEAN       NOT NULL,
    resolution    TEXT,
    created_at    TIMESTAMPTZ   NOT NULL,
    updated_at    TIMESTAMPTZ   NOT NULL
);
CREATE INDEX IF NOT EXISTS service_history_cursor ON service_history (updated_at, id);
CREATE INDEX IF NOT EXISTS service_history_client ON service_history (client_id);

CREATE TABLE IF NOT EXISTS satisfaction_scores (
    id             BIGINT      PRIMARY KEY,
    client_id      BIGINT      NOT NULL REFERENCES client_profiles (id),
    survey_date    DATE        NOT NULL,
    overall        SMALLINT    NOT NULL CHECK (overall BETWEEN 1 AND 5),
    responsiveness SMALLINT    NOT NULL CHECK (responsiveness BETWEEN 1 AND 5),
    quality        SMALLINT    NOT NULL CHECK (quality BETWEEN 1 AND 5),
    communication  SMALLINT    NOT NULL CHECK (communication BETWEEN 1 AND 5),
    nps            SMALLINT    NOT NULL CHECK (nps BETWEEN 0 AND 10),
    comment        TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS satisfaction_scores_cursor ON satisfaction_scores (updated_at, id);
CREATE INDEX IF NOT EXISTS satisfaction_scores_client ON satisfaction_scores (client_id);

CREATE TABLE IF NOT EXISTS communication_engagement (
    id                    BIGINT      PRIMARY KEY,
    client_id             BIGINT      NOT NULL REFERENCES client_profiles (id),
    channel               TEXT        NOT NULL,
    direction             TEXT        NOT NULL,
    occurred_at           TIMESTAMPTZ NOT NULL,
    response_time_minutes INTEGER,
    subject               TEXT        NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS communication_engagement_cursor ON communication_engagement (updated_at, id);
CREATE INDEX IF NOT EXISTS communication_engagement_client ON communication_engagement (client_id);

CREATE TABLE IF NOT EXISTS contracts (
    id            BIGINT        PRIMARY KEY,
    client_id     BIGINT        NOT NULL REFERENCES client_profiles (id),
    contract_type TEXT          NOT NULL,
    monthly_value NUMERIC(12,2) NOT NULL,
    currency      CHAR(3)       NOT NULL,
    term_months   INTEGER       NOT NULL,
    start_date    DATE          NOT NULL,
    renewal_date  DATE          NOT NULL,
    status        TEXT          NOT NULL,
    auto_renew    BOOLEAN       NOT NULL,
    created_at    TIMESTAMPTZ   NOT NULL,
    updated_at    TIMESTAMPTZ   NOT NULL
);
CREATE INDEX IF NOT EXISTS contracts_cursor ON contracts (updated_at, id);
CREATE INDEX IF NOT EXISTS contracts_client ON contracts (client_id);
