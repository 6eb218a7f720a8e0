//! The `labagent` binary: a thin shell over [`labagent::cli`].

fn main() -> std::process::ExitCode {
    labagent::cli::main()
}
