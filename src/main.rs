//! The `slackops` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    slackops::cli::run(slackops::cli::Cli::parse()).await
}
