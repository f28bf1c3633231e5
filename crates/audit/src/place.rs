//! Where something happened: an account (`[[account]] name`) and a region. It owns the one
//! rule about accounts in the audit log: rows written before accounts were recorded carry no
//! account, and they are the ambient credentials' account, named [`Place::DEFAULT_ACCOUNT`].

use std::fmt;

/// An account and region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// `[[account]] name`, or [`Place::DEFAULT_ACCOUNT`].
    pub account: String,
    /// The region.
    pub region: String,
}

impl Place {
    /// The name of the ambient credentials' account (no `[[account]]`), and of every row
    /// recorded before accounts were.
    pub const DEFAULT_ACCOUNT: &'static str = "default";

    /// `account` in `region`.
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Place {
        Place {
            account: account.into(),
            region: region.into(),
        }
    }

    /// The account a row names: its own, or [`Place::DEFAULT_ACCOUNT`] when it names none.
    pub fn account_or_default(account: Option<&str>) -> &str {
        account.unwrap_or(Place::DEFAULT_ACCOUNT)
    }

    /// Whether `account` is the ambient one (messages leave it unnamed).
    pub fn is_default_account(account: &str) -> bool {
        account == Place::DEFAULT_ACCOUNT
    }

    /// SQL for a row's account, `column` standing for its (nullable) `account` column: the
    /// one spelling of "no account means the default one" in a query.
    pub(crate) fn account_sql(column: &str) -> String {
        format!("COALESCE({column}, '{}')", Place::DEFAULT_ACCOUNT)
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}
