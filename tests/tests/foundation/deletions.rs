//! Deletions in the internal database: hard deletes found by key reconciliation, soft
//! deletes honoured, crash safety of a reconciliation.
