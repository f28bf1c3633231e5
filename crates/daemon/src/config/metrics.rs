//! `[metrics]`: where `/metrics` and `/healthz` are served.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[metrics]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// Address and port of the listener: `127.0.0.1:9464`.
    #[serde(default)]
    pub listen: Option<String>,
}

/// Checks `[metrics]`; the address to listen on, or why not.
pub fn check_spec(spec: &MetricsSpec) -> Result<Option<SocketAddr>, (&'static str, String)> {
    let Some(listen) = &spec.listen else {
        return Ok(None);
    };
    listen.parse::<SocketAddr>().map(Some).map_err(|_| {
        (
            "listen",
            format!("{listen:?} is not an address and port such as \"127.0.0.1:9464\""),
        )
    })
}
