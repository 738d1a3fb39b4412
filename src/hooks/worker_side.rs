//! Worker-side server hooks (`post_fork`, `post_worker_init`,
//! `worker_exit`): a worker whose config file defines any of them runs the
//! file itself, after fork, to get them (the master runs no Python), and
//! calls them at gunicorn's moments with gunicorn's arguments.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::host_module;
use crate::error;

/// The worker's view of the config file's hooks.
pub struct WorkerHooks {
    module: Py<PyModule>,
    /// The master's pid, the worker's age.
    ppid: u32,
    age: u64,
}

impl WorkerHooks {
    /// Run the config file `spec` in this worker's interpreter (already
    /// initialized) and keep its hooks; `cfg_toml` is `worker.cfg`. None
    /// when it fails (logged; the worker serves without hooks).
    pub fn load(spec: &str, cfg_toml: &str, ppid: u32, age: u64) -> Option<WorkerHooks> {
        Python::attach(|py| {
            let run = || -> PyResult<Py<PyModule>> {
                let m = host_module(py)?;
                let known: Vec<&str> = crate::config::SETTINGS.iter().map(|d| d.name).collect();
                let hooks: Vec<&str> = super::HOOKS.iter().map(|(n, _)| *n).collect();
                let set = py.import("builtins")?.getattr("set")?;
                m.getattr("load")?
                    .call1((spec, set.call1((known,))?, set.call1((hooks,))?))?;
                m.getattr("setup")?.call1((cfg_toml,))?;
                Ok(m.unbind())
            };
            match run() {
                Ok(module) => Some(WorkerHooks { module, ppid, age }),
                Err(e) => {
                    error!(
                        "Cannot load the hooks of {spec} in the worker: {}",
                        crate::wsgi::format_exception(py, &e)
                    );
                    None
                }
            }
        })
    }

    /// Call `hook` (post_fork, post_worker_init, worker_exit) if defined;
    /// an exception is logged with its traceback.
    pub fn call(&self, hook: &str, num_workers: u32, proc_name: &str) {
        Python::attach(|py| {
            let run = || -> PyResult<()> {
                let m = self.module.bind(py);
                let worker = PyDict::new(py);
                worker.set_item("pid", std::process::id())?;
                worker.set_item("ppid", self.ppid)?;
                worker.set_item("age", self.age)?;
                worker.set_item("alive", hook != "worker_exit")?;
                worker.set_item("booted", hook != "post_fork")?;
                let server = PyDict::new(py);
                server.set_item("pid", self.ppid)?;
                server.set_item("num_workers", num_workers)?;
                server.set_item("proc_name", proc_name)?;
                m.getattr("call")?
                    .call1((hook, server, worker, Vec::<i32>::new()))?;
                Ok(())
            };
            if let Err(e) = run() {
                error!(
                    "Exception in {hook} hook: {}",
                    crate::wsgi::format_exception(py, &e)
                );
            }
        })
    }
}
