//! Logging: JSON lines for Lambda (CloudWatch parses them), compact text
//! for a terminal. Secrets never reach a log line: the types that hold
//! them redact their Debug output.

use tracing_subscriber::EnvFilter;

pub fn init_json() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time() // Lambda stamps every line itself
        .try_init();
}

pub fn init_text() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,hyper=warn,reqwest=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .compact()
        .try_init();
}
