use crate::error::ErrorKind;

/// What the request loop does with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A success: the connector reads the body.
    Accept,
    /// Passing trouble: back off exponentially and retry; `Transient` once retries run out.
    Retry,
    /// The access token was refused: refresh it (single flight) and retry; `Auth` once
    /// that fails.
    Refresh,
    /// Throttled: wait for `Retry-After` (or the policy's default) and retry;
    /// `RateLimited` once the waits run out.
    Wait,
    /// Give up with this class.
    Fail(ErrorKind),
}

impl Action {
    /// The class of the error when this action is the last word.
    pub fn kind(self) -> ErrorKind {
        match self {
            Action::Accept => ErrorKind::System,
            Action::Retry => ErrorKind::Transient,
            Action::Refresh => ErrorKind::Auth,
            Action::Wait => ErrorKind::RateLimited,
            Action::Fail(kind) => kind,
        }
    }
}

/// Which HTTP statuses a [`Rule`] matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every status.
    Any,
    /// This one.
    Is(u16),
    /// `from..=to`.
    Range(u16, u16),
}

impl Status {
    fn matches(self, status: u16) -> bool {
        match self {
            Status::Any => true,
            Status::Is(s) => s == status,
            Status::Range(from, to) => (from..=to).contains(&status),
        }
    }
}

/// Which API fault codes (read from the body by the connector) a [`Rule`] matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Whatever the body says.
    Any,
    /// The body carries no fault code.
    Absent,
    /// One of the codes is this.
    Is(&'static str),
    /// One of the codes starts with this.
    Prefix(&'static str),
}

impl Code {
    fn matches(self, codes: &[&str]) -> bool {
        match self {
            Code::Any => true,
            Code::Absent => codes.is_empty(),
            Code::Is(c) => codes.contains(&c),
            Code::Prefix(p) => codes.iter().any(|c| c.starts_with(p)),
        }
    }
}

/// One line of a [`Table`]: responses with this status and fault code get this action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Statuses matched.
    pub status: Status,
    /// Fault codes matched.
    pub code: Code,
    /// What to do.
    pub action: Action,
}

impl Rule {
    /// A rule (`const`, so tables are `static` data).
    pub const fn new(status: Status, code: Code, action: Action) -> Rule {
        Rule {
            status,
            code,
            action,
        }
    }
}

/// A connector's error policy as data: the first matching rule decides, `otherwise`
/// when none does. The connector reads status and fault codes from a response and asks
/// [`Table::decide`]; the loop acts on the answer.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Rules, first match wins.
    pub rules: &'static [Rule],
    /// The action when no rule matches.
    pub otherwise: Action,
}

impl Table {
    /// The action for a response with `status` and the body's fault `codes`.
    pub fn decide(&self, status: u16, codes: &[&str]) -> Action {
        self.rules
            .iter()
            .find(|r| r.status.matches(status) && r.code.matches(codes))
            .map_or(self.otherwise, |r| r.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: Table = Table {
        rules: &[
            Rule::new(Status::Any, Code::Is("throttle"), Action::Wait),
            Rule::new(Status::Is(429), Code::Any, Action::Wait),
            Rule::new(
                Status::Is(401),
                Code::Is("wrong-cluster"),
                Action::Fail(ErrorKind::Config),
            ),
            Rule::new(Status::Is(401), Code::Any, Action::Refresh),
            Rule::new(Status::Range(200, 299), Code::Absent, Action::Accept),
            Rule::new(
                Status::Range(200, 299),
                Code::Prefix("subscription_"),
                Action::Fail(ErrorKind::Config),
            ),
            Rule::new(Status::Range(500, 599), Code::Any, Action::Retry),
        ],
        otherwise: Action::Fail(ErrorKind::System),
    };

    #[test]
    fn the_first_matching_rule_decides() {
        assert_eq!(TABLE.decide(200, &[]), Action::Accept);
        assert_eq!(TABLE.decide(200, &["throttle"]), Action::Wait);
        assert_eq!(TABLE.decide(429, &[]), Action::Wait);
        assert_eq!(
            TABLE.decide(401, &["wrong-cluster"]),
            Action::Fail(ErrorKind::Config)
        );
        assert_eq!(TABLE.decide(401, &[]), Action::Refresh);
        assert_eq!(TABLE.decide(503, &[]), Action::Retry);
    }

    #[test]
    fn codes_match_exactly_by_prefix_or_by_absence() {
        assert_eq!(
            TABLE.decide(200, &["other", "subscription_paused"]),
            Action::Fail(ErrorKind::Config)
        );
        assert_eq!(
            TABLE.decide(200, &["other"]),
            Action::Fail(ErrorKind::System)
        );
        assert_eq!(TABLE.decide(404, &[]), Action::Fail(ErrorKind::System));
    }

    #[test]
    fn each_action_has_its_class() {
        assert_eq!(Action::Wait.kind(), ErrorKind::RateLimited);
        assert_eq!(Action::Retry.kind(), ErrorKind::Transient);
        assert_eq!(Action::Refresh.kind(), ErrorKind::Auth);
        assert_eq!(Action::Fail(ErrorKind::Config).kind(), ErrorKind::Config);
    }
}
