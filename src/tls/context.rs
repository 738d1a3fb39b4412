//! gunicorn's `ssl_context(config, default_ssl_context_factory)` hook: run
//! in the worker (`context.py` records what the hook loads into its
//! `SSLContext`), and the description turned into [`Options`]: certificate
//! chains, CA certificates and verify mode, ciphers, minimum and maximum
//! versions, ALPN protocols. What rustls cannot do (encrypted keys, SNI
//! callbacks, TLS below 1.2, ...) is refused with its reason.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{Options, TlsError, Verify};

/// The Python half.
pub const CONTEXT_HELPER: &std::ffi::CStr = pyo3::ffi::c_str!(include_str!("context.py"));

static MODULE: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();

/// Run `hook(cfg, default_ssl_context_factory)` and describe the context
/// it returns. Warnings (settings rustls ignores) come back beside it.
pub fn from_ssl_context(
    py: Python<'_>,
    hook: &Bound<'_, PyAny>,
    cfg: &Bound<'_, PyAny>,
) -> Result<(Options, Vec<String>), TlsError> {
    let py_err = |e: PyErr| TlsError::Context(crate::wsgi::format_exception(py, &e));
    let m = crate::wsgi::embedded_module(
        py,
        &MODULE,
        CONTEXT_HELPER,
        pyo3::ffi::c_str!("_ferrocorn_ssl_context"),
        |_| Ok(()),
    )
    .map_err(py_err)?;
    let rec = m
        .getattr("describe")
        .and_then(|d| d.call1((hook, cfg)))
        .map_err(py_err)?;
    let rec = rec
        .cast::<PyDict>()
        .map_err(|e| TlsError::Context(e.to_string()))?;
    let get = |k: &str| -> Result<Bound<'_, PyAny>, TlsError> {
        rec.get_item(k)
            .ok()
            .flatten()
            .ok_or_else(|| TlsError::Context(format!("no {k} in the description")))
    };
    let extract_err = |e: PyErr| TlsError::Context(e.to_string());
    let refused: Vec<String> = get("refused")?.extract().map_err(extract_err)?;
    if let Some(first) = refused.first() {
        return Err(TlsError::Context(format!(
            "cannot use the SSLContext: {first}"
        )));
    }
    let chains: Vec<(String, Option<String>)> = get("chains")?.extract().map_err(extract_err)?;
    let ca: Vec<String> = get("ca")?.extract().map_err(extract_err)?;
    let alpn: Option<Vec<String>> = get("alpn")?.extract().map_err(extract_err)?;
    let ciphers: Option<String> = get("ciphers")?.extract().map_err(extract_err)?;
    let verify: u32 = get("verify")?.extract().map_err(extract_err)?;
    let tls13_only: bool = get("tls13_only")?.extract().map_err(extract_err)?;
    let tls12_only: bool = get("tls12_only")?.extract().map_err(extract_err)?;
    let warnings: Vec<String> = get("warnings")?.extract().map_err(extract_err)?;
    let alpn = match alpn {
        None => vec![b"http/1.1".to_vec()],
        Some(list) => {
            let known: Vec<Vec<u8>> = list
                .iter()
                .filter(|p| p.as_str() == "http/1.1")
                .map(|p| p.as_bytes().to_vec())
                .collect();
            if known.is_empty() {
                return Err(TlsError::Context(format!(
                    "set_alpn_protocols({list:?}) offers nothing this server speaks (http/1.1)"
                )));
            }
            known
        }
    };
    // The last chain loaded is the one OpenSSL would use.
    let chains = chains
        .into_iter()
        .rev()
        .take(1)
        .map(|(c, k)| (PathBuf::from(c), k.map(PathBuf::from)))
        .collect();
    Ok((
        Options {
            chains,
            ca: ca.into_iter().map(PathBuf::from).collect(),
            verify: match verify {
                0 => Verify::None,
                1 => Verify::Optional,
                _ => Verify::Required,
            },
            ciphers,
            tls13_only,
            tls12_only,
            alpn,
        },
        warnings,
    ))
}
