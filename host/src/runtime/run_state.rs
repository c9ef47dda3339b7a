//! What one node run's wasmtime `Store` holds: WASI (cut down), the memory
//! cap, captured stdout and stderr, and the run's capability context.

use crate::capabilities::RunContext;
use crate::record::LogStream;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bytes of stdout (and, separately, stderr) kept per run.
pub const STDIO_CAPTURE_BYTES: usize = 256 * 1024;

/// The per-run memory cap. Growing past it traps at once, with the sizes
/// recorded so the node error can say what happened.
pub(crate) struct MemoryCap {
    pub(crate) limit: usize,
    pub(crate) exceeded: Option<usize>,
}

/// Table elements a run may grow to.
const MAX_TABLE_ELEMENTS: usize = 200_000;

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = Some(desired);
            wasmtime::bail!("memory cap of {} bytes reached (asked for {desired})", self.limit);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}

/// The data of one node run's `Store`.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    /// What the plugin may reach through capability imports, and what it
    /// logged.
    pub(crate) context: RunContext,
}

impl RunState {
    pub(crate) fn new(context: RunContext, memory_limit: usize) -> Self {
        let stdout = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        let stderr = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        // WASI cut down to what a plugin needs: no filesystem (no preopens),
        // no sockets, no environment, no arguments, empty stdin. Clocks and
        // random numbers stay; stdout and stderr are captured.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap { limit: memory_limit, exceeded: None },
            stdout,
            stderr,
            context,
        }
    }

    /// Moves captured stdout/stderr into the run's log, a line at a time.
    pub(crate) fn drain_stdio(&mut self) {
        for (stream, pipe) in [(LogStream::Stdout, self.stdout.clone()), (LogStream::Stderr, self.stderr.clone())] {
            let bytes = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            for line in String::from_utf8_lossy(&bytes).lines() {
                self.context.log_line(stream, line.to_string());
            }
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
