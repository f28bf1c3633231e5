//! Emulator benchmark: is the emulator ever the bottleneck? Prints a Markdown table.
//!
//! - Memory: RSS of the `stopd-emulator` binary seeded with 10,000 pipelines x 20 executions
//!   (target <= 150 MiB).
//! - Throughput: ListPipelineExecutions answered per second with no injected latency, from
//!   keep-alive connections on loopback (target >= 5,000/s). The load generator runs on the same
//!   2 cores, so the figure is a floor for the emulator alone.
//!
//! Run: `cargo bench -p stopd-emulator --bench emulator`
//! (`-- --seconds 10 --connections 32` to change the load.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A well-formed SigV4 Authorization header (the emulator checks its shape, not the signature).
const AUTH: &str = "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/codepipeline/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0000000000000000000000000000000000000000000000000000000000000000\r\nX-Amz-Date: 20261128T090000Z\r\n";

struct Emulator {
    child: Child,
    addr: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Emulator {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stopd-emulator"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("stopd-emulator starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    Emulator { child, addr }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One keep-alive connection sending requests back to back until `stop`, cycling through `ops`
/// (ListPipelineExecutions or GetPipeline, for random pipelines). Answers 200 count in `done`,
/// ThrottlingException in `throttled`; anything else fails the bench.
#[allow(clippy::too_many_arguments)]
async fn client(
    addr: String,
    names: Arc<Vec<String>>,
    ops: &'static [&'static str],
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    throttled: Arc<AtomicU64>,
    seed: usize,
) {
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut i = seed;
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let name = &names[i % names.len()];
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            >> 1;
        let op = ops[n % ops.len()];
        n += 1;
        let body = match op {
            "GetPipeline" => format!("{{\"name\":\"{name}\"}}"),
            _ => format!("{{\"pipelineName\":\"{name}\"}}"),
        };
        let req = format!(
            "POST / HTTP/1.1\r\nHost: b\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: CodePipeline_20150709.{op}\r\n{AUTH}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        // Read one response: headers, then Content-Length bytes.
        let mut have = 0;
        loop {
            let n = s.read(&mut buf[have..]).await.unwrap();
            assert!(n > 0, "connection closed");
            have += n;
            if let Some(end) = find(&buf[..have], b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end]).unwrap();
                if head.starts_with("HTTP/1.1 200") {
                    done.fetch_add(1, Ordering::Relaxed);
                } else if head
                    .to_ascii_lowercase()
                    .contains("x-amzn-errortype: throttlingexception")
                {
                    throttled.fetch_add(1, Ordering::Relaxed);
                } else {
                    panic!("{head}");
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                while have < end + 4 + len {
                    have += s.read(&mut buf[have..]).await.unwrap();
                }
                break;
            }
        }
    }
}

/// Drives `connections` clients over `ops` for `seconds`; (answered/s, throttled/s).
fn drive(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    names: &Arc<Vec<String>>,
    ops: &'static [&'static str],
    connections: u64,
    seconds: u64,
) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let throttled = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..connections as usize)
            .map(|i| {
                tokio::spawn(client(
                    addr.to_string(),
                    names.clone(),
                    ops,
                    stop.clone(),
                    done.clone(),
                    throttled.clone(),
                    i * 7919 + 1,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
    });
    let secs = started.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / secs,
        throttled.load(Ordering::Relaxed) as f64 / secs,
    )
}

/// The pipeline names of an emulator (first 1,000).
fn pipeline_names(rt: &tokio::runtime::Runtime, addr: &str) -> Arc<Vec<String>> {
    Arc::new(rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = "{\"maxResults\":1000}";
        let req = format!(
            "POST / HTTP/1.1\r\nHost: b\r\nX-Amz-Target: CodePipeline_20150709.ListPipelines\r\n{AUTH}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let json = &out[out.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["pipelines"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect()
    }))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = arg("--seconds", 5);
    let connections = arg("--connections", 16);
    println!("| measurement | value | target |");
    println!("|---|---|---|");

    // Memory with 10,000 pipelines x 20 executions of history.
    let t = Instant::now();
    let big = start(&["--fleet", "10000", "--history", "20", "--seed", "1"]);
    let seeded = t.elapsed();
    let rss = rss_kib(big.child.id(), "VmRSS:");
    let hwm = rss_kib(big.child.id(), "VmHWM:");
    println!(
        "| RSS, 10,000 pipelines x 20 executions (after seeding) | {:.1} MiB (peak {:.1} MiB) | <= 150 MiB |",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "| start-up incl. generating that fleet | {:.2} s | |",
        seeded.as_secs_f64()
    );

    // Throughput against the same big fleet.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let names = pipeline_names(&rt, &big.addr);
    let (rps, _) = drive(
        &rt,
        &big.addr,
        &names,
        &["ListPipelineExecutions"],
        connections,
        seconds,
    );
    println!(
        "| ListPipelineExecutions answered per second ({connections} keep-alive connections, {seconds} s, 0 ms latency) | {rps:.0}/s | >= 5,000/s |"
    );
    let rss_after = rss_kib(big.child.id(), "VmRSS:");
    println!(
        "| RSS after the load | {:.1} MiB | |",
        rss_after as f64 / 1024.0
    );
    drop(big);

    // Throttling: --rate-limit 50 --burst 50, two operations alternating (ListPipelineExecutions,
    // GetPipeline) from 4 connections, once per bucket scope.
    for scope in ["operation", "account"] {
        let e = start(&[
            "--fleet",
            "1000",
            "--seed",
            "1",
            "--rate-limit",
            "50",
            "--burst",
            "50",
            "--rate-limit-scope",
            scope,
        ]);
        let names = pipeline_names(&rt, &e.addr);
        let (ok, throttled) = drive(
            &rt,
            &e.addr,
            &names,
            &["ListPipelineExecutions", "GetPipeline"],
            4,
            seconds,
        );
        let expected = if scope == "account" {
            "~50/s (one bucket)"
        } else {
            "~100/s (50/s each)"
        };
        println!(
            "| --rate-limit 50 --burst 50 --rate-limit-scope {scope}: answered / throttled per second (2 operations, 4 connections, {seconds} s) | {ok:.0}/s / {throttled:.0}/s | {expected} |"
        );
    }
    println!();
    println!(
        "machine: {} cores; load generator on the same machine",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
