//! Writes the generated documentation (see `ferrocorn::config::docs`) into a
//! directory (ferrocorn.1, ferrocorn.bash, _ferrocorn, example.toml): `cargo run --example ferrocorn_docs -- OUTDIR [YYYY-MM-DD]`.
//! The date defaults to the day of `SOURCE_DATE_EPOCH` (set by Debian builds
//! from debian/changelog), so the output is reproducible.

use std::path::PathBuf;
use std::process::ExitCode;

use ferrocorn::config::docs;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: ferrocorn_docs OUTDIR [YYYY-MM-DD]");
        return ExitCode::from(2);
    };
    let date = args.next().unwrap_or_else(|| {
        let secs = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or_else(ferrocorn::log::timefmt::unix_now);
        // "Sun, 06 Nov 1994 08:49:37 GMT" -> "06 Nov 1994"
        ferrocorn::log::timefmt::http_date(secs)[5..16].to_string()
    });
    let version = env!("CARGO_PKG_VERSION");
    let files = [
        ("ferrocorn.1", docs::man_page(version, &date)),
        ("ferrocorn.bash", docs::bash_completion()),
        ("_ferrocorn", docs::zsh_completion()),
        ("example.toml", docs::example_config()),
    ];
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("ferrocorn_docs: {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    for (name, text) in files {
        let path = out.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("ferrocorn_docs: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
