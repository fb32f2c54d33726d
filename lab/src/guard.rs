//! A lab that tears itself down when dropped, for tests.

use std::ops::{Deref, DerefMut};

use super::{teardown, Lab, LabError, LabSpec, TeardownReport};

/// Owns a lab that is up and tears it down on drop, also when the test
/// holding it panics. Derefs to [`Lab`].
///
/// Prefer [`LabGuard::down`] at the end of a test: it returns the teardown's
/// result, where a drop can only log a failure (with `tracing`).
#[derive(Debug)]
pub struct LabGuard {
    lab: Lab,
    done: bool,
}

impl LabGuard {
    /// Brings up `spec` (see [`Lab::up`]) under a guard.
    pub fn up(spec: &LabSpec) -> Result<Self, LabError> {
        Ok(LabGuard {
            lab: Lab::up(spec)?,
            done: false,
        })
    }

    /// Tears the lab down now and reports what was removed.
    pub fn down(mut self) -> Result<TeardownReport, LabError> {
        self.done = true;
        teardown(self.lab.name(), self.lab.state_root())
    }
}

impl Deref for LabGuard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl DerefMut for LabGuard {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Err(e) = teardown(self.lab.name(), self.lab.state_root()) {
            tracing::error!(lab = %self.lab.name(), error = %e, "lab guard could not tear the lab down");
        }
    }
}
