//! Progress of a long command on stderr: on a terminal, a spinner line with
//! the current step and its elapsed time, each finished step left above it
//! with a check mark; elsewhere (a pipe, a CI log), one plain line per step.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const TICK: Duration = Duration::from_millis(80);

struct Current {
    step: Option<(String, Instant)>,
    stopped: bool,
}

/// The progress display of one command.
pub(crate) struct Progress {
    start: Instant,
    tty: bool,
    current: Arc<Mutex<Current>>,
    spinner: Option<thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts a display; a spinner thread only when stderr is a terminal.
    pub(crate) fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        let current = Arc::new(Mutex::new(Current {
            step: None,
            stopped: false,
        }));
        let spinner = tty.then(|| {
            let current = current.clone();
            thread::spawn(move || spin(&current))
        });
        Progress {
            start: Instant::now(),
            tty,
            current,
            spinner,
        }
    }

    /// Since the display started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Finishes the current step (if any) and starts `step`.
    pub(crate) fn step(&self, step: &str) {
        self.finish_step("✓");
        if !self.tty {
            eprintln!("[{:>5.1}s] {step}", self.start.elapsed().as_secs_f64());
        }
        if let Ok(mut c) = self.current.lock() {
            c.step = Some((step.to_string(), Instant::now()));
        }
    }

    /// Ends the display: the current step done (`ok`) or failed.
    pub(crate) fn finish(mut self, ok: bool) {
        self.finish_step(if ok { "✓" } else { "✗" });
        self.stop();
    }

    fn finish_step(&self, mark: &str) {
        let Ok(mut c) = self.current.lock() else {
            return;
        };
        if let Some((step, since)) = c.step.take() {
            if self.tty {
                eprint!(
                    "\r\x1b[2K{mark} {step} ({:.1}s)\n",
                    since.elapsed().as_secs_f64()
                );
            } else if mark != "✓" {
                eprintln!(
                    "[{:>5.1}s] failed: {step}",
                    self.start.elapsed().as_secs_f64()
                );
            }
        }
    }

    fn stop(&mut self) {
        if let Ok(mut c) = self.current.lock() {
            c.stopped = true;
        }
        if let Some(handle) = self.spinner.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Redraws the spinner line until stopped.
fn spin(current: &Mutex<Current>) {
    let mut frame = 0;
    loop {
        {
            let Ok(c) = current.lock() else { return };
            if c.stopped {
                return;
            }
            if let Some((step, since)) = &c.step {
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{} {step} ({:.1}s)",
                    FRAMES[frame % FRAMES.len()],
                    since.elapsed().as_secs_f64()
                );
                let _ = err.flush();
            }
        }
        frame += 1;
        thread::sleep(TICK);
    }
}
