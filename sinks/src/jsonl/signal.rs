//! Flushing the pipeline when the process is told to stop or panics.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use instrument::PipelineGuard;
use signal_hook::consts::{SIGINT, SIGTERM};

/// The pipeline the handlers flush.
static TARGET: Mutex<Option<Weak<PipelineGuard>>> = Mutex::new(None);
/// Whether the handlers are installed (they are installed once per process).
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

thread_local! {
    /// Set while this thread flushes from the panic hook, so that a panic inside the flush does
    /// not flush again.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Makes `SIGTERM`, `SIGINT` and panics flush `pipeline` before the process goes, so that a
/// service stopped by its supervisor (or by Ctrl-C), or one that panics, loses nothing it
/// recorded. Opt-in: nothing is installed until this is called.
///
/// - On the first `SIGTERM` or `SIGINT`, a thread of its own flushes the pipeline (waiting at
///   most the pipeline's `flush_timeout`), then restores the signal's default action and raises
///   it again, so the process ends as it would have without the handler (killed by that
///   signal, which supervisors read as a normal stop). A second such signal while the flush
///   runs ends the process at once.
/// - A panic hook, chained after the hook installed before (which still prints the message),
///   flushes the pipeline, on any thread but the pipeline's own (`instrument-*` threads, where
///   a flush would wait for the panicking thread itself). With `panic = "abort"` this is the
///   last chance to write what was recorded; with unwinding, a panic that is caught later
///   flushes too, which costs a flush and loses nothing.
///
/// The handlers are installed once per process; a later call points them at another pipeline.
/// They hold the pipeline weakly: dropping it as usual still shuts it down, after which a
/// signal ends the process right away. Other `SIGTERM`/`SIGINT` handlers registered through
/// `signal-hook` still run; a handler installed with plain `sigaction` after this call replaces
/// this one.
///
/// ```no_run
/// use std::sync::Arc;
/// use instrument_sinks::JsonlSink;
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let sink = JsonlSink::builder().dir("./instrument-data/logs").build()?;
///     let pipeline = Arc::new(instrument::builder().sink(sink).install()?);
///     instrument_sinks::jsonl::flush_on_termination(&pipeline)?;
///     // ... serve until a supervisor sends SIGTERM ...
///     Ok(())
/// }
/// ```
///
/// # Errors
/// The signal handlers or their thread could not be set up (the error says which); the panic
/// hook is then not installed either.
pub fn flush_on_termination(pipeline: &Arc<PipelineGuard>) -> io::Result<()> {
    *TARGET.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::downgrade(pipeline));
    INSTALLED
        .get_or_init(install)
        .clone()
        .map_err(io::Error::other)
}

fn install() -> Result<(), String> {
    // Registered before the iterator's handler, so that it runs first: once the first signal
    // armed it, the next one takes the default action at once.
    let armed = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_default(signal, Arc::clone(&armed))
            .map_err(|e| format!("cannot install a handler for signal {signal}: {e}"))?;
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install the SIGTERM/SIGINT handlers: {e}"))?;
    std::thread::Builder::new()
        .name("jsonl-signal-flush".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                armed.store(true, Ordering::SeqCst);
                flush_target();
                // Ends the process as the signal's default action does.
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let pipeline_thread = std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with("instrument-"));
        if !pipeline_thread && !IN_HOOK.get() {
            IN_HOOK.set(true);
            flush_target();
            IN_HOOK.set(false);
        }
    }));
    Ok(())
}

/// Flushes the pipeline the handlers point at, if it is still installed, reporting failure on
/// stderr (there is no caller to return it to).
fn flush_target() {
    let target = TARGET
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(Weak::upgrade);
    if let Some(pipeline) = target
        && let Err(e) = pipeline.flush()
    {
        eprintln!("instrument: flush before exit incomplete: {e}");
    }
}
