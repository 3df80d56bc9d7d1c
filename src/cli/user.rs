//! `inbox user add`: create an agent with a password (for the web UI) and an API token.

use clap::{Args, Subcommand};
use inbox_core::model::Role;
use inbox_core::passwords;
use serde_json::json;

use inbox_app::config::Config;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an agent and an API token for it.
    Add(AddArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Sign-in email address.
    #[arg(long)]
    email: String,
    #[arg(long, value_parser = ["admin", "agent"], default_value = "agent")]
    role: String,
    /// Display name (defaults to the part of the email before @).
    #[arg(long)]
    name: Option<String>,
    /// Password for the web UI (at least 8 characters); generated and printed when omitted.
    #[arg(long, env = "INBOX_USER_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Print `{"id":…,"token":…}` as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn execute(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let UserCommand::Add(args) = command;
    let email = inbox_core::identity::EmailAddress::parse(&args.email)
        .map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let role = Role::parse(&args.role).unwrap_or(Role::Agent);
    let (password, generated) = match args.password {
        Some(p) => (p, false),
        None => (passwords::generate(), true),
    };
    let hash = passwords::hash(&password).map_err(|e| anyhow::anyhow!("--password: {e}"))?;
    let name = args.name.unwrap_or_else(|| {
        email
            .as_str()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    let store = super::open_store(config).await?;
    let agent = store
        .create_agent(email.as_str(), &name, role, Some(&hash))
        .await?;
    let token = store.create_api_token(agent.id, "cli").await?;
    store.close().await;
    if args.json {
        let mut out = json!({"id": agent.id, "token": token});
        if generated {
            out["password"] = password.into();
        }
        println!("{out}");
    } else {
        println!("Created {} {} ({}).", role.as_str(), email, agent.id);
        println!("API token (shown once): {token}");
        if generated {
            println!("Password (shown once): {password}");
        }
    }
    Ok(())
}
