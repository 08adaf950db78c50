-- Tributary internal-db schema, MySQL / MariaDB flavour.
-- DATETIME(6) columns hold UTC (the connector never relies on the session time zone).
-- Indexes are declared inline because MySQL 8 has no CREATE INDEX IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS client_profiles (
    id                     BIGINT       NOT NULL PRIMARY KEY,
    company_name           VARCHAR(255) NOT NULL,
    industry               VARCHAR(64)  NOT NULL,
    employee_count         INT          NOT NULL,
    address_line           VARCHAR(255) NOT NULL,
    city                   VARCHAR(128) NOT NULL,
    region                 VARCHAR(128) NOT NULL,
    postal_code            VARCHAR(32)  NOT NULL,
    country                CHAR(2)      NOT NULL,
    phone                  VARCHAR(32)  NOT NULL,
    email_domain           VARCHAR(255) NOT NULL,
    service_tier           VARCHAR(32)  NOT NULL,
    account_manager        VARCHAR(128) NOT NULL,
    status                 VARCHAR(32)  NOT NULL,
    superops_account_id    VARCHAR(64),
    quickbooks_customer_id VARCHAR(64),
    created_at             DATETIME(6)  NOT NULL,
    updated_at             DATETIME(6)  NOT NULL,
    INDEX client_profiles_cursor (updated_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS service_history (
    id            BIGINT        NOT NULL PRIMARY KEY,
    client_id     BIGINT        NOT NULL,
    ticket_ref    VARCHAR(32)   NOT NULL,
    technician    VARCHAR(128)  NOT NULL,
    category      VARCHAR(64)   NOT NULL,
    priority      VARCHAR(16)   NOT NULL,
    opened_at     DATETIME(6)   NOT NULL,
    resolved_at   DATETIME(6),
    hours_worked  DECIMAL(10,2) NOT NULL,
    billable      BOOLEAN       NOT NULL,
    resolution    TEXT,
    created_at    DATETIME(6)   NOT NULL,
    updated_at    DATETIME(6)   NOT NULL,
    INDEX service_history_cursor (updated_at, id),
    CONSTRAINT service_history_client FOREIGN KEY (client_id) REFERENCES client_profiles (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS satisfaction_scores (
    id             BIGINT      NOT NULL PRIMARY KEY,
    client_id      BIGINT      NOT NULL,
    survey_date    DATE        NOT NULL,
    overall        SMALLINT    NOT NULL,
    responsiveness SMALLINT    NOT NULL,
    quality        SMALLINT    NOT NULL,
    communication  SMALLINT    NOT NULL,
    nps            SMALLINT    NOT NULL,
    comment        TEXT,
    created_at     DATETIME(6) NOT NULL,
    updated_at     DATETIME(6) NOT NULL,
    INDEX satisfaction_scores_cursor (updated_at, id),
    CONSTRAINT satisfaction_scores_client FOREIGN KEY (client_id) REFERENCES client_profiles (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS communication_engagement (
    id                    BIGINT       NOT NULL PRIMARY KEY,
    client_id             BIGINT       NOT NULL,
    channel               VARCHAR(16)  NOT NULL,
    direction             VARCHAR(16)  NOT NULL,
    occurred_at           DATETIME(6)  NOT NULL,
    response_time_minutes INT,
    subject               VARCHAR(255) NOT NULL,
    created_at            DATETIME(6)  NOT NULL,
    updated_at            DATETIME(6)  NOT NULL,
    INDEX communication_engagement_cursor (updated_at, id),
    CONSTRAINT communication_engagement_client FOREIGN KEY (client_id) REFERENCES client_profiles (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS contracts (
    id            BIGINT        NOT NULL PRIMARY KEY,
    client_id     BIGINT        NOT NULL,
    contract_type VARCHAR(32)   NOT NULL,
    monthly_value DECIMAL(12,2) NOT NULL,
    currency      CHAR(3)       NOT NULL,
    term_months   INT           NOT NULL,
    start_date    DATE          NOT NULL,
    renewal_date  DATE          NOT NULL,
    status        VARCHAR(16)   NOT NULL,
    auto_renew    BOOLEAN       NOT NULL,
    created_at    DATETIME(6)   NOT NULL,
    updated_at    DATETIME(6)   NOT NULL,
    INDEX contracts_cursor (updated_at, id),
    CONSTRAINT contracts_client FOREIGN KEY (client_id) REFERENCES client_profiles (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
