//! The bundled Raft key-value store (being built under issue 3; not usable yet).

/// Command-line arguments of `faultline node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {}

/// Runs one node until it is killed.
pub fn run(_args: NodeArgs) -> anyhow::Result<()> {
    anyhow::bail!("faultline node is not built yet (issue 3)")
}
