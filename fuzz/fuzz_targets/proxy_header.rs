//! The PROXY protocol header parser (`ferrocorn::proxy::parse`), as the
//! worker feeds it: the bytes buffered so far, growing one read at a time.
//!
//! Input: byte 0 picks the mode (off, v1, v2, auto); the rest is what the
//! connection begins with. Properties (beyond "no panic"): parsing every
//! prefix of the input agrees with parsing the whole (a prefix that is
//! not yet a decision is `Incomplete`, and once a prefix decides, every
//! longer one decides the same: the same header and length, the same
//! error, or absent); `Incomplete { started: true }` is never followed by
//! `Absent`; a header's length is at most the input, at most 107 bytes for
//! v1 and 16 + 65535 for v2; TCP4/TCP6 headers carry both addresses of
//! their family, the others none.
#![no_main]

use ferrocorn::proxy::{parse, Kind, Mode, Parsed, V1_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let mode = [Mode::Off, Mode::V1, Mode::V2, Mode::Auto][(sel & 3) as usize];
    let whole = parse(input, mode);
    let mut decided: Option<Result<Parsed, _>> = None;
    let mut started = false;
    for n in 0..=input.len() {
        let r = parse(&input[..n], mode);
        match (&decided, &r) {
            (None, Ok(Parsed::Incomplete { started: s })) => {
                assert!(!(started && !s), "started, then not");
                started |= s;
            }
            (None, _) => {
                if started {
                    assert_ne!(r, Ok(Parsed::Absent), "a started header turned absent");
                }
                decided = Some(r.clone());
            }
            (Some(d), _) => assert_eq!(d, &r, "a longer prefix decided otherwise"),
        }
    }
    if let Some(d) = decided {
        assert_eq!(d, whole);
    } else {
        assert!(matches!(whole, Ok(Parsed::Incomplete { .. })));
    }
    if mode == Mode::Off {
        assert_eq!(whole, Ok(Parsed::Absent));
    }
    if let Ok(Parsed::Done { header, len }) = whole {
        assert!(len <= input.len());
        match header.version {
            1 => assert!(len <= V1_MAX),
            2 => assert!((16..=16 + 65535).contains(&len)),
            v => panic!("version {v}"),
        }
        match header.kind {
            Kind::Tcp4 | Kind::Tcp6 => {
                let (s, d) = (header.source.unwrap(), header.destination.unwrap());
                let v4 = header.kind == Kind::Tcp4;
                assert!(s.is_ipv4() == v4 && d.is_ipv4() == v4);
            }
            _ => assert!(header.source.is_none() && header.destination.is_none()),
        }
    }
});
