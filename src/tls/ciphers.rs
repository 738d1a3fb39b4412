//! `--ciphers`: an OpenSSL cipher list ("ECDHE+AESGCM:!aNULL",
//! "ECDHE-RSA-AES128-GCM-SHA256:...", "HIGH") mapped onto the suites
//! rustls offers.
//!
//! As with OpenSSL (and so Python's `SSLContext.set_ciphers`, which
//! gunicorn calls), the list governs TLS 1.2; TLS 1.3 suites stay on unless
//! the list names some of them by their TLS 1.3 names, and then only those
//! are offered. Words are separated by `:`, `,`, `;` or spaces; `!word`
//! removes suites for good, `-word` removes them (a later word may add them
//! back), `+word` moves them to the end; `A+B` means suites matching both;
//! `@STRENGTH`, `@SECLEVEL=n` and unknown words match nothing, as in
//! OpenSSL. A list that leaves no suite at all is an error naming it.

use rustls::crypto::ring::cipher_suite as cs;
use rustls::SupportedCipherSuite;

/// A suite and what OpenSSL's keywords say about it.
struct Entry {
    suite: SupportedCipherSuite,
    openssl: &'static str,
    tls13: bool,
    /// Keywords this suite matches, besides its name.
    tags: &'static [&'static str],
}

const ECDSA12: &[&str] = &["ECDHE", "EECDH", "kECDHE", "kEECDH", "ECDSA", "aECDSA"];
const RSA12: &[&str] = &["ECDHE", "EECDH", "kECDHE", "kEECDH", "RSA", "aRSA"];

fn entries() -> Vec<Entry> {
    let e = |suite, openssl, tls13, tags: &'static [&'static str]| Entry {
        suite,
        openssl,
        tls13,
        tags,
    };
    vec![
        e(
            cs::TLS13_AES_256_GCM_SHA384,
            "TLS_AES_256_GCM_SHA384",
            true,
            &[],
        ),
        e(
            cs::TLS13_AES_128_GCM_SHA256,
            "TLS_AES_128_GCM_SHA256",
            true,
            &[],
        ),
        e(
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            "TLS_CHACHA20_POLY1305_SHA256",
            true,
            &[],
        ),
        e(
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            false,
            &["AESGCM", "AES", "AES256", "SHA384"],
        ),
        e(
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            "ECDHE-RSA-AES256-GCM-SHA384",
            false,
            &["AESGCM", "AES", "AES256", "SHA384"],
        ),
        e(
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            false,
            &["AESGCM", "AES", "AES128", "SHA256"],
        ),
        e(
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            "ECDHE-RSA-AES128-GCM-SHA256",
            false,
            &["AESGCM", "AES", "AES128", "SHA256"],
        ),
        e(
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            false,
            &["CHACHA20", "SHA256"],
        ),
        e(
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            "ECDHE-RSA-CHACHA20-POLY1305",
            false,
            &["CHACHA20", "SHA256"],
        ),
    ]
}

/// Keywords every TLS 1.2 suite here matches.
const EVERY12: &[&str] = &["ALL", "DEFAULT", "HIGH", "AEAD", "TLSv1.2"];

fn matches(entry: &Entry, word: &str) -> bool {
    if word.eq_ignore_ascii_case(entry.openssl) {
        return true;
    }
    if entry.tls13 {
        return false;
    }
    let auth = if entry.openssl.contains("ECDSA") {
        ECDSA12
    } else {
        RSA12
    };
    EVERY12.contains(&word) || auth.contains(&word) || entry.tags.contains(&word)
}

/// The suites a cipher list selects, in its order.
pub fn select(list: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    let all = entries();
    let mut chosen: Vec<usize> = Vec::new();
    let mut banned: Vec<usize> = Vec::new();
    let mut named13: Vec<usize> = Vec::new();
    for token in list
        .split([':', ',', ';', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if token.starts_with('@') {
            continue;
        }
        let (op, body) = match token.as_bytes()[0] {
            b'!' | b'-' | b'+' => (token.as_bytes()[0], &token[1..]),
            _ => (b' ', token),
        };
        let words: Vec<&str> = body.split('+').filter(|w| !w.is_empty()).collect();
        if words.is_empty() {
            continue;
        }
        let hit: Vec<usize> = (0..all.len())
            .filter(|&i| words.iter().all(|w| matches(&all[i], w)))
            .collect();
        for i in hit {
            match op {
                b'!' => {
                    banned.push(i);
                    chosen.retain(|&c| c != i);
                    named13.retain(|&c| c != i);
                }
                b'-' => {
                    chosen.retain(|&c| c != i);
                    named13.retain(|&c| c != i);
                }
                b'+' => {
                    if let Some(p) = chosen.iter().position(|&c| c == i) {
                        chosen.remove(p);
                        chosen.push(i);
                    }
                }
                _ if banned.contains(&i) => {}
                _ if all[i].tls13 => {
                    if !named13.contains(&i) {
                        named13.push(i);
                    }
                }
                _ => {
                    if !chosen.contains(&i) {
                        chosen.push(i);
                    }
                }
            }
        }
    }
    if chosen.is_empty() && named13.is_empty() {
        return Err(format!(
            "--ciphers {list:?} selects no cipher suite this server supports (it has: {})",
            all.iter().map(|e| e.openssl).collect::<Vec<_>>().join(":")
        ));
    }
    let tls13: Vec<usize> = if named13.is_empty() {
        (0..all.len()).filter(|&i| all[i].tls13).collect()
    } else {
        named13
    };
    Ok(tls13
        .into_iter()
        .chain(chosen)
        .map(|i| all[i].suite)
        .collect())
}

/// OpenSSL's name for a suite (the tests' way of naming what was chosen).
#[cfg(test)]
fn openssl_name(suite: rustls::CipherSuite) -> String {
    entries()
        .into_iter()
        .find(|e| e.suite.suite() == suite)
        .map(|e| e.openssl.to_string())
        .unwrap_or_else(|| format!("{suite:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> Vec<String> {
        select(list)
            .unwrap()
            .into_iter()
            .map(|s| openssl_name(s.suite()))
            .collect()
    }

    #[test]
    fn exact_names_keep_their_order_after_tls13() {
        let n = names("ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256");
        assert_eq!(
            n[3..],
            ["ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-GCM-SHA256"]
        );
        assert!(n[..3].iter().all(|s| s.starts_with("TLS_")));
    }

    #[test]
    fn keywords_intersect_and_exclude() {
        let n = names("ECDHE+AESGCM:!ECDSA");
        assert_eq!(
            n[3..],
            ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"]
        );
        // A banned suite is not added back.
        let n = names("!CHACHA20:HIGH");
        assert!(n
            .iter()
            .all(|s| !s.contains("CHACHA20-POLY1305") || s.starts_with("TLS_")));
        // `-` removes, a later word adds back.
        let n = names("HIGH:-AES256:ECDHE-RSA-AES256-GCM-SHA384");
        assert_eq!(n.last().unwrap(), "ECDHE-RSA-AES256-GCM-SHA384");
    }

    #[test]
    fn mozilla_intermediate_list_maps_what_exists() {
        let n = names(
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
             ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
             DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384",
        );
        assert_eq!(n.len(), 9);
    }

    #[test]
    fn tls13_names_restrict_tls13() {
        let n = names("TLS_AES_128_GCM_SHA256");
        assert_eq!(n, ["TLS_AES_128_GCM_SHA256"]);
    }

    #[test]
    fn a_list_naming_nothing_supported_is_refused() {
        let e = select("DHE-RSA-AES128-SHA:RC4").unwrap_err();
        assert!(e.contains("DHE-RSA-AES128-SHA:RC4"), "{e}");
        assert!(select("!ALL").is_err());
        assert!(select("").is_err());
    }
}
