//! Logging: `STOPD_LOG`, `STOPD_LOG_FORMAT`, and text fields escaped before they reach a
//! terminal or the journal. Set up once, by the binary, before any command runs.

/// Sets up tracing: `STOPD_LOG` filter, `STOPD_LOG_FORMAT=json`, journald-friendly lines.
pub fn init_logging(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("STOPD_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let journald = stderr_is_journal();
    let json = std::env::var("STOPD_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .fmt_fields(escaping_fields());
    if json {
        builder.json().init();
    } else if journald {
        // journald stamps every line itself, and keeps the level from a `<N>` prefix.
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_ansi(false)
            .with_target(false);
        builder.event_format(SyslogPriority(format)).init();
    } else {
        builder.with_ansi(false).init();
    }
}

/// Text fields as tracing writes them (`message` bare, others `name=value`), with control
/// characters escaped: a pipeline name, rule or reason from a policy, the API or a command line
/// (`stopd stop --pipeline $'\e[2J'`) must not reach a terminal or the journal raw. (The JSON
/// format escapes by itself.)
fn escaping_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        let text = crate::cli::output::escape(&text);
        if field.name() == "message" {
            write!(writer, "{text}")
        } else {
            write!(writer, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

/// Whether stderr is the journal's stream (`$JOURNAL_STREAM` names its device and inode), as
/// under systemd: then each line carries its syslog priority.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return true;
    };
    stream.to_string_lossy() == format!("{}:{}", meta.dev(), meta.ino())
}

/// Prefixes each line with its syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>`
/// debug), which journald reads as the line's level: `journalctl -p err` then works.
struct SyslogPriority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for SyslogPriority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The syslog priority of a tracing level.
fn syslog_priority(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}
