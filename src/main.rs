//! The `ferrocorn` command: the standalone binary (the wheel's console
//! script runs the same command line, src/command.rs, from Python).

fn main() -> std::process::ExitCode {
    ferrocorn::command::main()
}
