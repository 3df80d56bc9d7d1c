//! `inbox connectors`: Serve inbound webhooks and deliver replies (production; needs Kafka).

use std::net::SocketAddr;

use clap::Args;

use crate::app::{Application, Roles};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "INBOX_LISTEN")]
    listen: Option<SocketAddr>,
}

pub async fn execute(mut config: Config, args: ServiceArgs) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    Application::build_with_roles(config, Roles::CONNECTORS)
        .await?
        .run_until_stopped()
        .await
}
