//! What the daemon does while it runs: the scheduler and its sweeps, the event consumer,
//! gates, accounts and regions, ad-hoc freezes, metrics, notification delivery, the instance lock.

pub mod events;
pub mod freezes;
pub mod gates;
pub mod leader;
pub mod leadership;
pub mod lock;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod run;
pub mod scheduler;
pub mod secrets;
pub mod starting;
pub mod status;
pub mod sweep;
pub mod targets;
