//! The `arctyk` command: `serve` (the default), `migrate`, `token create`,
//! `events export`, `events import`, `audit verify`, `projections rebuild`.

use clap::Parser;

// Many small allocations per request (JSON, headers, query results); mimalloc serves
// them measurably faster than the system allocator under concurrency.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = arctyk::cli::Cli::parse();
    arctyk::telemetry::init();
    match arctyk::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("arctyk: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
