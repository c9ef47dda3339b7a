//! `handoff:plugin/log`: plugin log lines, into the host's log and the run
//! record, tagged with pipeline, node and execution.

use super::RunContext;
use crate::bindings::handoff::plugin::log::{Host, Level};
use crate::record::LogStream;

impl Host for RunContext {
    async fn log(&mut self, level: Level, message: String) {
        let stream = match level {
            Level::Debug => LogStream::Debug,
            Level::Info => LogStream::Info,
            Level::Warn => LogStream::Warn,
            Level::Error => LogStream::Error,
        };
        self.log_line(stream, message);
    }
}
