//! The `sync` executor: the app runs on the loop's own thread, one request
//! at a time, as in gunicorn's sync worker.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pyo3::prelude::*;

use super::{App, Done, Executor, Job};
use crate::worker::IN_APP;

pub struct Inline {
    app: Arc<dyn App>,
}

impl Inline {
    pub fn new(app: Arc<dyn App>) -> Inline {
        Inline { app }
    }
}

impl Executor for Inline {
    fn submit(&mut self, job: Job) -> Option<Done> {
        let app = &self.app;
        Some(Python::attach(|py| {
            IN_APP.store(true, Ordering::SeqCst);
            let done = app.call(py, job);
            IN_APP.store(false, Ordering::SeqCst);
            done
        }))
    }

    fn concurrent(&self) -> bool {
        false
    }
}
