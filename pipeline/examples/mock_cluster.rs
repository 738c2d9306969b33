//! A Kafka-protocol broker for demos and manual tests: librdkafka's mock cluster on 127.0.0.1
//! with the exporter's two topics (transactions: 16 partitions, labels: 2: librdkafka's mock keeps only the last 5 MB of each). Prints the bootstrap address and runs
//! until its standard input closes (or for `--seconds N`).
//!
//! `cargo run -p pipeline --example mock_cluster -- [--seconds N]`

use rdkafka::mocking::MockCluster;
use std::io::Read;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse::<u64>())
        .transpose()?;
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("transactions", 16, 1)?;
    cluster.create_topic("labels", 2, 1)?;
    println!("{}", cluster.bootstrap_servers());
    match seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        None => {
            let mut sink = Vec::new();
            std::io::stdin().read_to_end(&mut sink)?;
        }
    }
    Ok(())
}
