//! The background log writer: lines leave the request path in batches.
//!
//! The thread that logs appends its formatted line to a shared buffer and
//! goes on; a writer thread writes the buffer to stdout in one `write` at
//! most every [`FLUSH_INTERVAL`] (sooner once it holds [`FLUSH_BYTES`]), as
//! nginx's `access_log ... buffer=` does. When stdout cannot keep up and
//! `limit` lines wait, further lines are dropped and counted instead of
//! slowing requests down. Stopping writes what is buffered, giving the
//! writer [`STOP_TIMEOUT`].
//!
//! Hand-written because tracing-appender's non-blocking writer wakes its
//! thread and makes a `write` for every line: behind a busy pass-through
//! route that was a futex wake, spinning `sched_yield`s and a syscall per
//! request. Here the logging thread wakes the writer only when the buffer
//! was empty or has just filled.

use std::{
    io::Write,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

/// How long a line may wait for the lines after it.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// A buffer this large is written at once.
pub(crate) const FLUSH_BYTES: usize = 64 * 1024;
/// How long stopping waits for the last lines to be written.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// Lines waiting for the writer thread.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
    /// The writer waits for a first line (woken by it).
    idle: bool,
    /// The writer lets the batch grow (woken when it is full).
    filling: bool,
    stopping: bool,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    limit: usize,
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves plain bytes behind: still usable.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The `MakeWriter` of the log lines: each `write` is one formatted line.
#[derive(Debug, Clone)]
pub(crate) struct LogWriter {
    shared: Arc<Shared>,
}

/// The count of lines dropped because `limit` lines were waiting.
#[derive(Debug, Clone)]
pub(crate) struct DroppedLines(Arc<Shared>);

impl DroppedLines {
    pub(crate) fn get(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// Stops the writer thread when dropped, after it wrote what is buffered.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub(crate) struct LogWriterGuard {
    shared: Arc<Shared>,
    stopped: mpsc::Receiver<()>,
}

impl LogWriter {
    /// A writer of at most `limit` waiting lines to `out`, and its guard.
    pub(crate) fn spawn(
        limit: usize,
        out: impl Write + Send + 'static,
    ) -> std::io::Result<(Self, LogWriterGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            wake: Condvar::new(),
            limit,
            dropped: AtomicU64::new(0),
        });
        let (stopped_tx, stopped) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                write_batches(&writer_shared, out);
                let _ = stopped_tx.send(());
            })?;
        Ok((
            Self {
                shared: Arc::clone(&shared),
            },
            LogWriterGuard { shared, stopped },
        ))
    }

    pub(crate) fn dropped_lines(&self) -> DroppedLines {
        DroppedLines(Arc::clone(&self.shared))
    }
}

impl Write for LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.lines >= self.shared.limit {
            drop(pending);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        pending.bytes.extend_from_slice(line);
        pending.lines += 1;
        let wake = pending.idle || (pending.filling && pending.bytes.len() >= FLUSH_BYTES);
        if wake {
            pending.idle = false;
            pending.filling = false;
        }
        drop(pending);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The writer thread: waits for a line, lets the batch grow for
/// [`FLUSH_INTERVAL`] (or until it is [`FLUSH_BYTES`]), writes it whole.
fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.bytes.is_empty() && !pending.stopping {
            pending.idle = true;
            pending = shared
                .wake
                .wait(pending)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        pending.idle = false;
        if !pending.stopping && pending.bytes.len() < FLUSH_BYTES {
            pending.filling = true;
            pending = shared
                .wake
                .wait_timeout_while(pending, FLUSH_INTERVAL, |pending| {
                    !pending.stopping && pending.bytes.len() < FLUSH_BYTES
                })
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
            pending.filling = false;
        }
        std::mem::swap(&mut batch, &mut pending.bytes);
        let lines = std::mem::take(&mut pending.lines);
        let stopping = pending.stopping && batch.is_empty();
        drop(pending);
        if stopping {
            return;
        }
        if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
            shared.dropped.fetch_add(lines as u64, Ordering::Relaxed);
        }
        batch.clear();
    }
}

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        let _ = self.stopped.recv_timeout(STOP_TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` into a shared buffer, counting its writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(bytes);
            sink.1 += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_in_few_writes_and_all_by_the_stop() {
        let sink = Sink::default();
        let (writer, guard) = LogWriter::spawn(100_000, sink.clone()).expect("spawned");
        let mut expected = Vec::new();
        for n in 0..10_000 {
            let line = format!("{{\"line\":{n}}}\n");
            writer.clone().write_all(line.as_bytes()).expect("written");
            expected.extend_from_slice(line.as_bytes());
        }
        drop(guard);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        assert_eq!(bytes, expected, "every line, in order, written by the stop");
        assert!(writes >= 1, "the lines were written");
        assert!(
            writes < 1_000,
            "{writes} writes for 10,000 lines: batched, not one per line"
        );
        assert_eq!(writer.dropped_lines().get(), 0);
    }

    #[test]
    fn lines_past_the_limit_are_dropped_and_counted() {
        /// A stdout that blocks until released: the lines pile up behind it.
        struct Stalled(mpsc::Receiver<()>, Sink);
        impl Write for Stalled {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                self.1.write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (release, stalled) = mpsc::channel();
        let sink = Sink::default();
        let (writer, guard) =
            LogWriter::spawn(10, Stalled(stalled, sink.clone())).expect("spawned");
        // The first line reaches the stalled write; wait until it was taken.
        writer.clone().write_all(b"first\n").expect("written");
        while writer.shared.lock().lines != 0 {
            thread::yield_now();
        }
        for n in 0..25 {
            writer
                .clone()
                .write_all(format!("line {n}\n").as_bytes())
                .expect("never an error");
        }
        assert_eq!(writer.dropped_lines().get(), 15, "10 wait, 15 are dropped");
        drop(release);
        drop(guard);
        let written = String::from_utf8(sink.0.lock().unwrap().0.clone()).expect("text");
        assert!(written.starts_with("first\nline 0\n"), "{written}");
        assert!(
            written.ends_with("line 9\n"),
            "the 10 that waited: {written}"
        );
    }
}
