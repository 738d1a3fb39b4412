//! Helpers shared by the fuzz targets: picking parser settings from the
//! first input bytes, and comparing parse outcomes.

use ferrocorn::http::{HttpError, Leniency, Limits, RequestHead};

/// Settings the head targets choose from with the first input byte: the
/// defaults, tiny limits (so every limit is reachable with short inputs),
/// the 0 ("unlimited"/default) values, and a middle ground.
pub fn limits_from(sel: u8, lenient: u8) -> Limits {
    let (max_line, max_fields, max_field_size) = match sel % 4 {
        0 => (4094, 100, 8190),
        1 => (32, 4, 40),
        2 => (0, 0, 0),
        _ => (256, 16, 128),
    };
    Limits {
        max_line,
        max_fields,
        max_field_size,
        leniency: Leniency {
            obsolete_folding: lenient & 1 != 0,
            strip_header_spaces: lenient & 2 != 0,
            unconventional_method: lenient & 4 != 0,
            unconventional_version: lenient & 8 != 0,
            casefold_method: lenient & 16 != 0,
        },
    }
}

/// A parse result reduced to what must be reproducible however the bytes
/// arrive: the whole head (through its Debug form, `RequestHead` has no
/// `PartialEq`) and the bytes used, or that it was refused. Which status a
/// refusal gets may depend on how much had arrived (the first fuzz run
/// found `POST / HTTP/1.1\r\x02...` with a 32-byte line limit: 414 in one
/// piece, where the whole line is seen to be too long, and 400, stray CR,
/// byte by byte, where the CR is seen first); both refuse the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Incomplete,
    Head(String, usize),
    Error,
}

pub fn outcome(r: &Result<Option<(RequestHead, usize)>, HttpError>) -> Outcome {
    match r {
        Ok(None) => Outcome::Incomplete,
        Ok(Some((h, used))) => Outcome::Head(format!("{h:?}"), *used),
        Err(_) => Outcome::Error,
    }
}
