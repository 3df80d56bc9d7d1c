pub async fn execute(_c: &crate::config::Config, _b: BenchCommand) -> anyhow::Result<()> {
    Ok(())
}
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    Ingest,
}
