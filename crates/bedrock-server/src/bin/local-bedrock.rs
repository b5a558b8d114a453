//! A bare local Bedrock process for tests and scripts (`cmi serve` is the user-facing command).
//!
//! Usage: `local-bedrock --data-dir DIR [--port N] [--warm]`. Prints `endpoint=URL` on stdout once it accepts
//! connections, then serves until killed.

use std::io::Write as _;
use std::path::PathBuf;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let mut data_dir: Option<PathBuf> = None;
    let mut port: u16 = 0;
    let mut warm = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data-dir" => data_dir = args.next().map(PathBuf::from),
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(0),
            "--warm" => warm = true,
            other => {
                eprintln!("unknown argument {other:?}: expected --data-dir DIR [--port N] [--warm]");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let Some(data_dir) = data_dir else {
        eprintln!("missing --data-dir DIR");
        return std::process::ExitCode::from(2);
    };
    let mut cfg = bedrock_server::ServerConfig::new(data_dir);
    cfg.bind = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    cfg.warm = warm;
    cfg.advertise = true;
    let server = match bedrock_server::start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    println!("endpoint={}", server.endpoint_url());
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}
