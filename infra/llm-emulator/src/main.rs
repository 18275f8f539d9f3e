//! `llm-emulator`: the LLM emulator on its own port, for demos and manual
//! tests (`FIELDGATE_ANTHROPIC_URL=http://127.0.0.1:8789`). Faults are
//! queued with `POST /_emulator/faults` (a JSON array of faults).

use clap::Parser;
use fieldgate_llm_emulator::{EmulatorConfig, LlmEmulator};

#[derive(Debug, Parser)]
#[command(
    name = "llm-emulator",
    about = "Anthropic / OpenAI-compatible API emulator"
)]
struct Args {
    #[arg(long, default_value_t = 8789)]
    port: u16,
    /// The x-api-key the Anthropic shape accepts.
    #[arg(long, env = "LLM_EMULATOR_API_KEY", default_value = fieldgate_llm_emulator::DEFAULT_API_KEY)]
    api_key: String,
    /// Bearer token the OpenAI shape wants (none: no check, like llama.cpp).
    #[arg(long, env = "LLM_EMULATOR_OPENAI_KEY")]
    openai_key: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let emu = LlmEmulator::new(EmulatorConfig {
        api_key: args.api_key,
        openai_key: args.openai_key,
        ..EmulatorConfig::default()
    });
    let (url, server) = emu.start(args.port).await?;
    eprintln!("llm-emulator listening on {url}");
    server.await?;
    Ok(())
}
