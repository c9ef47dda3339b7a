//! What one node run's wasmtime `Store` holds: WASI (cut down), the memory
//! cap, captured stdout and stderr, and the run's capability context.

use crate::capabilities::RunContext;
use crate::record::LogStream;
use std::sync::{Arc, Mutex, PoisonError};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bytes of stdout (and, separately, stderr) kept per run; what a plugin
/// writes beyond them is counted and dropped, never an error to it.
pub const STDIO_CAPTURE_BYTES: usize = 256 * 1024;

/// A stdout or stderr that keeps the first [`STDIO_CAPTURE_BYTES`] and
/// drops the rest: a chatty plugin is neither stopped by a full pipe nor
/// able to fill the host's memory.
#[derive(Clone, Default)]
struct CapturePipe {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: u64,
}

impl CapturePipe {
    fn take(&self) -> (Vec<u8>, u64) {
        let mut captured = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut captured.kept), std::mem::take(&mut captured.dropped))
    }

    fn keep(&self, bytes: &[u8]) {
        let mut captured = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = STDIO_CAPTURE_BYTES.saturating_sub(captured.kept.len());
        let kept = bytes.len().min(room);
        captured.kept.extend_from_slice(&bytes[..kept]);
        captured.dropped += (bytes.len() - kept) as u64;
    }
}

#[async_trait::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.keep(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CapturePipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.keep(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl wasmtime_wasi::cli::IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

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
    stdout: CapturePipe,
    stderr: CapturePipe,
    /// What the plugin may reach through capability imports, and what it
    /// logged.
    pub(crate) context: RunContext,
}

impl RunState {
    pub(crate) fn new(context: RunContext, memory_limit: usize) -> Self {
        let stdout = CapturePipe::default();
        let stderr = CapturePipe::default();
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
            let (bytes, dropped) = pipe.take();
            for line in String::from_utf8_lossy(&bytes).lines() {
                self.context.log_line(stream, line.to_string());
            }
            if dropped > 0 {
                self.context.log_line(
                    stream,
                    format!("… {dropped} more bytes dropped (output past {STDIO_CAPTURE_BYTES} bytes is not kept)"),
                );
            }
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
