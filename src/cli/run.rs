//! `inbox run`: everything in one process.

use std::net::SocketAddr;

use clap::Args;

use inbox_app::app::Application;
use inbox_app::config::Config;
use inbox_app::demo;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Seed an admin, a webhook channel and sample conversations, and print how to use them.
    #[arg(long)]
    demo: bool,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "INBOX_LISTEN")]
    listen: Option<SocketAddr>,
}

pub async fn execute(mut config: Config, args: RunArgs) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let mut app = Application::build(config.clone()).await?;
    let base_url = config.base_url(app.local_addr());
    if args.demo {
        let seeded = demo::seed(app.store(), &base_url).await?;
        println!("{}", seeded.instructions(&base_url));
        app = app.with_routes(demo::receiver(seeded.channel.secret.clone()));
    } else {
        println!(
            "Inbox listening on {base_url} (store: {}).",
            app.store().backend()
        );
    }
    app.run_until_stopped().await
}
