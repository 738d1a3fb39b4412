//! Worker-side server hooks (`post_fork`, `post_worker_init`,
//! `worker_exit`, `pre_request`, `post_request`): a worker whose config
//! file defines any of them runs the file itself, after fork, to get them
//! (the master runs no Python), and calls them at gunicorn's moments with
//! gunicorn's arguments.

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

    /// Run the file's `ssl_context(config, default_ssl_context_factory)`
    /// and describe the context it returns; None when it defines none.
    pub fn ssl_context(
        &self,
    ) -> Option<Result<(crate::tls::Options, Vec<String>), crate::tls::TlsError>> {
        Python::attach(|py| {
            let m = self.module.bind(py);
            let hook = m
                .getattr("_ns")
                .ok()?
                .get_item("ssl_context")
                .ok()
                .filter(|h| h.is_callable())?;
            let cfg = m.getattr("_cfg").ok()?;
            Some(crate::tls::from_ssl_context(py, &hook, &cfg))
        })
    }

    fn worker_state<'py>(&self, py: Python<'py>, hook: &str) -> PyResult<Bound<'py, PyDict>> {
        let worker = PyDict::new(py);
        worker.set_item("pid", std::process::id())?;
        worker.set_item("ppid", self.ppid)?;
        worker.set_item("age", self.age)?;
        worker.set_item("alive", hook != "worker_exit")?;
        worker.set_item("booted", !matches!(hook, "post_fork" | "post_worker_init"))?;
        Ok(worker)
    }

    /// pre_request and post_request, when the file defines either.
    pub fn request_hooks(&self) -> Option<RequestHooks> {
        Python::attach(|py| {
            let run = || -> PyResult<Option<RequestHooks>> {
                let m = self.module.bind(py);
                let (pre, post, worker): (Option<Py<PyAny>>, Option<Py<PyAny>>, Py<PyAny>) = m
                    .getattr("request_hooks")?
                    .call1((self.worker_state(py, "pre_request")?,))?
                    .extract()?;
                if pre.is_none() && post.is_none() {
                    return Ok(None);
                }
                Ok(Some(RequestHooks {
                    pre,
                    post,
                    worker,
                    request: m.getattr("Request")?.unbind(),
                    response: m.getattr("Response")?.unbind(),
                }))
            };
            run().unwrap_or_else(|e| {
                error!(
                    "Cannot set up the request hooks: {}",
                    crate::wsgi::format_exception(py, &e)
                );
                None
            })
        })
    }

    /// Call `hook` (post_fork, post_worker_init, worker_exit) if defined.
    /// Returns false, with the exception and its traceback logged, if it
    /// raised.
    pub fn call(&self, hook: &str, num_workers: u32, proc_name: &str) -> bool {
        Python::attach(|py| {
            let run = || -> PyResult<bool> {
                let m = self.module.bind(py);
                let worker = self.worker_state(py, hook)?;
                let server = PyDict::new(py);
                server.set_item("pid", self.ppid)?;
                server.set_item("num_workers", num_workers)?;
                server.set_item("proc_name", proc_name)?;
                let out = m
                    .getattr("call")?
                    .call1((hook, server, worker, Vec::<i32>::new()))?;
                Ok(out.get_item("failed").is_err())
            };
            run().unwrap_or_else(|e| {
                error!(
                    "Exception in {hook} hook: {}",
                    crate::wsgi::format_exception(py, &e)
                );
                false
            })
        })
    }
}

/// `pre_request(worker, req)` and `post_request(worker, req, environ,
/// resp)`, called around each request with gunicorn's objects.
pub struct RequestHooks {
    pre: Option<Py<PyAny>>,
    post: Option<Py<PyAny>>,
    worker: Py<PyAny>,
    request: Py<PyAny>,
    response: Py<PyAny>,
}

/// What `req` is made of.
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub minor: u8,
    pub headers: &'a [(String, String)],
    /// (ip, port) for TCP, None for a unix socket.
    pub remote: Option<(String, u16)>,
}

impl RequestHooks {
    /// Build `req` and run pre_request. Err when pre_request raised (the
    /// request then fails with a 500, as in gunicorn).
    pub fn pre<'py>(&self, py: Python<'py>, info: &RequestInfo<'_>) -> PyResult<Bound<'py, PyAny>> {
        let remote: Bound<'py, PyAny> = match &info.remote {
            Some((ip, port)) => (ip.as_str(), *port).into_pyobject(py)?.into_any(),
            None => "".into_pyobject(py)?.into_any(),
        };
        let req = self.request.bind(py).call1((
            info.method,
            info.uri,
            info.path,
            info.query,
            info.minor,
            info.headers.to_vec(),
            remote,
        ))?;
        if let Some(pre) = &self.pre {
            pre.bind(py).call1((self.worker.bind(py), &req))?;
        }
        Ok(req)
    }

    /// Run post_request; an exception is logged with its traceback.
    pub fn post(
        &self,
        py: Python<'_>,
        req: &Bound<'_, PyAny>,
        environ: &Bound<'_, PyAny>,
        status: Option<&str>,
        headers: &[(String, String)],
        sent: u64,
    ) {
        let Some(post) = &self.post else {
            return;
        };
        let run = || -> PyResult<()> {
            let resp = self
                .response
                .bind(py)
                .call1((status, headers.to_vec(), sent))?;
            post.bind(py)
                .call1((self.worker.bind(py), req, environ, resp))?;
            Ok(())
        };
        if let Err(e) = run() {
            crate::exception!(
                "Exception in post_request hook: {}",
                crate::wsgi::format_exception(py, &e)
            );
        }
    }
}
