//! The strict parser against httparse (the tokenizer it is built on, used
//! plainly here): whatever the strict parser accepts with the default limits
//! and no leniency, httparse must accept too, ending at the same byte, with
//! the same method, target, version and header fields (values compared
//! after trimming spaces and tabs, as both decode them).
#![no_main]

use ferrocorn::http::{parse_request_head, Limits};
use libfuzzer_sys::fuzz_target;

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !b" \t".contains(c))
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !b" \t".contains(c))
        .map_or(s, |e| e + 1);
    &b[s..e.max(s)]
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(Some((head, used))) = parse_request_head(data, &limits) else {
        return;
    };
    let mut slots = vec![httparse::EMPTY_HEADER; limits.effective_max_fields()];
    let mut req = httparse::Request::new(&mut slots);
    let status = req.parse(data);
    let Ok(httparse::Status::Complete(n)) = status else {
        panic!("strict parser accepted, httparse says {status:?}");
    };
    assert_eq!(n, used, "heads end at different bytes");
    assert_eq!(req.method, Some(head.method.as_str()));
    assert_eq!(
        req.path.map(|p| latin1(p.as_bytes())),
        Some(head.target.clone())
    );
    assert_eq!(req.version, Some(head.minor_version));
    assert_eq!(req.headers.len(), head.headers.len());
    for (h, (name, value)) in req.headers.iter().zip(&head.headers) {
        assert_eq!(h.name, name);
        assert_eq!(latin1(trim(h.value)), *value, "values of {name} differ");
    }
});
