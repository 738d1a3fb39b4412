# The ssl_context(config, default_ssl_context_factory) hook, run in a
# worker: the SSLContext the hook returns is read back as a description
# that the worker turns into a rustls configuration (tls/context.rs).
#
# An SSLContext does not tell what certificates were loaded into it, so
# while the hook runs, SSLContext's loading methods also record their
# arguments on the context. What rustls cannot do is refused with a reason.
import os
import ssl
import warnings

_RECORDED = (
    "load_cert_chain",
    "load_verify_locations",
    "set_alpn_protocols",
    "set_ciphers",
    "set_servername_callback",
    "load_dh_params",
    "set_ecdh_curve",
)


def _record(ctx):
    rec = ctx.__dict__.get("_ferrocorn")
    if rec is None:
        rec = {"chains": [], "ca": [], "alpn": None, "ciphers": None,
               "refused": [], "warnings": []}
        ctx.__dict__["_ferrocorn"] = rec
    return rec


def _wrap(name, original):
    def method(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        rec = _record(self)
        if name == "load_cert_chain":
            certfile = args[0] if args else kwargs.get("certfile")
            keyfile = args[1] if len(args) > 1 else kwargs.get("keyfile")
            password = args[2] if len(args) > 2 else kwargs.get("password")
            if password is not None:
                rec["refused"].append(
                    "load_cert_chain(password=...): encrypted keys are not supported; "
                    "decrypt the key file")
            rec["chains"].append((os.fspath(certfile),
                                  None if keyfile is None else os.fspath(keyfile)))
        elif name == "load_verify_locations":
            cafile = args[0] if args else kwargs.get("cafile")
            capath = args[1] if len(args) > 1 else kwargs.get("capath")
            cadata = args[2] if len(args) > 2 else kwargs.get("cadata")
            if cafile is not None:
                rec["ca"].append(os.fspath(cafile))
            if capath is not None:
                for entry in sorted(os.listdir(capath)):
                    full = os.path.join(os.fspath(capath), entry)
                    if os.path.isfile(full):
                        rec["ca"].append(full)
            if cadata is not None:
                rec["refused"].append(
                    "load_verify_locations(cadata=...): give the CA certificates as a file (cafile=)")
        elif name == "set_alpn_protocols":
            rec["alpn"] = [str(p) for p in args[0]]
        elif name == "set_ciphers":
            rec["ciphers"] = str(args[0])
        elif name == "set_servername_callback":
            if args and args[0] is not None:
                rec["refused"].append("SNI callbacks (set_servername_callback, sni_callback) cannot run under rustls")
        elif name == "load_dh_params":
            rec["warnings"].append("load_dh_params is ignored: rustls offers no finite-field DHE suites")
        elif name == "set_ecdh_curve":
            rec["warnings"].append("set_ecdh_curve is ignored: rustls offers X25519, P-256 and P-384")
        return result
    method.__name__ = name
    return method


def _default_factory(cfg):
    def factory():
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if cfg.ca_certs:
            ctx.load_verify_locations(cafile=cfg.ca_certs)
        ctx.load_cert_chain(certfile=cfg.certfile, keyfile=cfg.keyfile)
        ctx.verify_mode = ssl.VerifyMode(cfg.cert_reqs or 0)
        if cfg.ciphers:
            ctx.set_ciphers(cfg.ciphers)
        return ctx
    return factory


def describe(hook, cfg):
    """Run the hook; return what its context says, as a dict."""
    cls = ssl.SSLContext
    saved = {n: cls.__dict__.get(n) for n in _RECORDED}
    for n in _RECORDED:
        setattr(cls, n, _wrap(n, getattr(cls, n)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = hook(cfg, _default_factory(cfg))
    finally:
        for n, v in saved.items():
            if v is None:
                try:
                    delattr(cls, n)
                except AttributeError:
                    pass
            else:
                setattr(cls, n, v)
    if not isinstance(ctx, ssl.SSLContext):
        raise TypeError("ssl_context must return an ssl.SSLContext, not %s" % type(ctx).__name__)
    rec = dict(_record(ctx))
    refused = list(rec["refused"])
    if getattr(ctx, "sni_callback", None) is not None:
        refused.append("SNI callbacks (set_servername_callback, sni_callback) cannot run under rustls")
    if getattr(ctx, "post_handshake_auth", False):
        refused.append("post_handshake_auth is not supported")
    if getattr(ctx, "keylog_filename", None):
        refused.append("keylog_filename is not supported")
    mode = ctx.verify_mode
    rec["verify"] = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 2}[mode]
    lo, hi = ctx.minimum_version, ctx.maximum_version
    order = {ssl.TLSVersion.TLSv1: 10, ssl.TLSVersion.TLSv1_1: 11,
             ssl.TLSVersion.TLSv1_2: 12, ssl.TLSVersion.TLSv1_3: 13}
    low = order.get(lo, 0)
    high = order.get(hi, 99)
    if ctx.options & ssl.OP_NO_TLSv1_2:
        low = max(low, 13)
    if ctx.options & ssl.OP_NO_TLSv1_3:
        high = min(high, 12)
    if high < 12:
        refused.append("maximum_version below TLS 1.2: rustls offers TLS 1.2 and 1.3 only")
    if low > high:
        refused.append("minimum_version is above maximum_version")
    rec["tls13_only"] = low >= 13
    rec["tls12_only"] = high == 12
    if not rec["chains"]:
        refused.append("the context has no certificate (load_cert_chain was not called)")
    if rec["verify"] and not rec["ca"]:
        refused.append("verify_mode asks for client certificates but no CA file was loaded "
                       "(load_verify_locations(cafile=...))")
    rec["refused"] = refused
    return rec
