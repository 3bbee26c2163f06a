//! Log lines: text for people, or one JSON object per line for log shippers
//! (`--log-format json`). `RUST_LOG` filters either way.

use std::io::Write as _;

use serde::Serialize;

use crate::config::LogFormat;

/// What `whis` logs unless `RUST_LOG` says otherwise.
const DEFAULT_FILTER: &str = "info,actix_server=warn,whis::access=warn";

/// One JSON log line.
#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    level: &'a str,
    target: &'a str,
    message: String,
}

pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_FILTER));
    builder.format_timestamp_millis();
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = Line {
                ts: buf.timestamp_millis().to_string(),
                level: record.level().as_str(),
                target: record.target(),
                message: record.args().to_string(),
            };
            match serde_json::to_string(&line) {
                Ok(json) => writeln!(buf, "{json}"),
                Err(_) => Ok(()),
            }
        });
    }
    builder.init();
}
