//! Load tool behind `unigate bench` (being written).

/// Arguments of `unigate bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub addr: String,
}

/// Runs the load tool.
pub fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("the load tool is not built yet")
}
