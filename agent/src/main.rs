use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = winky_agent::cli::Cli::parse();
    // libgit2's process-wide timeouts are set before any thread could use libgit2.
    winky_agent::git::timeouts::init();
    // One TLS crypto provider for every client (Vault's is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("winky: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(winky_agent::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("winky: {e:#}");
            ExitCode::FAILURE
        }
    }
}
