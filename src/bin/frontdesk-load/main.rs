//! `frontdesk-load`: a websocket load generator for frontdesk's visitor
//! endpoint (`/ws`), measured against a bare tokio-tungstenite echo server in
//! the same run so that frontdesk's figures come with a baseline.
//!
//! ```text
//! frontdesk-load --url ws://127.0.0.1:8080/ws --visitors 1000 --duration 10
//!     [--rate MSGS_PER_S] [--think-ms MS] [--warmup SECONDS | --count N] [--json] [--no-echo]
//!     [--echo-url URL | --echo-cpus CPUS] [--sources IP,IP,...]
//!     [--escalate-every N] [--vary-case] [--ack-log FILE]
//! frontdesk-load --url ws://127.0.0.1:8080/ws --idle --visitors 10000 --duration 30 [--server-pid PID]
//! frontdesk-load echo-server --listen 127.0.0.1:18182
//! ```
//!
//! Each visitor is one connection and one conversation: `hello`, then questions
//! from a fixed mix of routine shop questions, one at a time, each timed until
//! its `reply` (see `load` for closed and open loop). It targets loopback
//! addresses only, and every run is bounded by `--warmup` and `--duration` (plus
//! at most one reply timeout to collect replies in flight) and optionally `--count`;
//! SIGINT or SIGTERM ends it early, still printing the figures. A visitor
//! whose connection is lost resumes its conversation on a new one, and
//! `--ack-log` records every acknowledged message (scripts/crash-test checks
//! them against the database of a server killed during the run).
//! docs/benchmarks.md has the measured figures and how they were taken.

mod acklog;
mod echo;
mod idle;
mod load;
mod pacer;
mod report;
mod stamp;
mod sys;
mod visitor;
mod wire;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use tokio::runtime::Runtime;

use acklog::AckLog;
use load::{Hooks, Pacing, Plan, Stop};
use visitor::Target;

/// Longest run accepted, in seconds.
const MAX_DURATION_SECS: f64 = 3600.0;
/// Most visitors accepted (many more than one machine's ports allow without --sources).
const MAX_VISITORS: usize = 1_000_000;
/// File descriptors kept free for everything that is not a visitor's socket.
const SPARE_FDS: u64 = 64;
/// Pause between the frontdesk run and the echo run, so closing sockets settle.
const BETWEEN_RUNS: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(
    name = "frontdesk-load",
    version,
    about = "Websocket load generator for frontdesk, with an echo-server baseline",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the echo baseline by itself, e.g. to pin it to a CPU with taskset;
    /// point a run at it with --echo-url.
    EchoServer {
        /// Loopback address to listen on, e.g. 127.0.0.1:18182.
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[derive(Args)]
struct RunArgs {
    /// frontdesk's visitor websocket, e.g. ws://127.0.0.1:8080/ws (loopback addresses only).
    #[arg(long, required = true)]
    url: Option<String>,
    /// Concurrent visitors, each with its own connection and conversation.
    #[arg(long, value_name = "N", default_value_t = 100)]
    visitors: usize,
    /// How long to send for, per target (idle mode: how long to hold).
    #[arg(long, value_name = "SECONDS", required = true)]
    duration: Option<f64>,
    /// Run the same load for this long first, unmeasured, so that the figures
    /// describe a server in steady state rather than its first second (cold
    /// caches, memory not yet touched). Errors during it still count.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0, conflicts_with_all = ["count", "idle"])]
    warmup: f64,
    /// Open loop: this many messages per second in total, scheduled evenly over the
    /// visitors, latency counted from the scheduled time. Without it: closed loop.
    #[arg(long, value_name = "MSGS_PER_S", conflicts_with = "think_ms")]
    rate: Option<f64>,
    /// Closed loop: pause after each reply before the visitor's next message.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    think_ms: u64,
    /// Stop after this many messages in total, per target.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Print exactly one JSON object on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Skip the echo-server baseline.
    #[arg(long)]
    no_echo: bool,
    /// Measure an echo server started with `frontdesk-load echo-server` instead of one in this process.
    #[arg(long, value_name = "URL", conflicts_with = "no_echo")]
    echo_url: Option<String>,
    /// Pin the in-process echo server's threads to these CPUs (e.g. 0); one worker per CPU.
    #[arg(long, value_name = "CPUS", value_delimiter = ',', conflicts_with_all = ["echo_url", "no_echo"])]
    echo_cpus: Vec<usize>,
    /// Bind client sockets to these loopback source addresses in turn, to open more
    /// connections than one address has ephemeral ports (e.g. 127.0.0.1,127.0.0.2).
    #[arg(long, value_name = "IPS", value_delimiter = ',')]
    sources: Vec<IpAddr>,
    /// Open --visitors connections, say hello on each, and hold them idle for
    /// --duration instead of sending messages.
    #[arg(long, conflicts_with_all = ["rate", "count", "echo_url", "echo_cpus"])]
    idle: bool,
    /// With --idle: the server's process id, to read its VmRSS before connecting and while holding.
    #[arg(long, value_name = "PID", requires = "idle")]
    server_pid: Option<u32>,
    /// Seconds to wait for a reply, or for a connection and its welcome.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    timeout: f64,
    /// Connections being opened at once (keep below the server's listen backlog).
    #[arg(long, value_name = "N", default_value_t = 200)]
    connect_concurrency: usize,
    /// Every N-th message of each visitor asks for a person, so conversations
    /// also reach the handoff queue (the visitor then starts a new one).
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "idle")]
    escalate_every: u64,
    /// Write each message's letters in a different mix of upper and lower
    /// case, so that no two messages are the same text and the server
    /// decides every one afresh rather than giving the decision it
    /// remembers for a message it has seen (the answers stay the same).
    #[arg(long, conflicts_with = "idle")]
    vary_case: bool,
    /// Write one line per message frontdesk acknowledged to FILE:
    /// `conversation_id<TAB>message_id` (not for the echo baseline).
    #[arg(long, value_name = "FILE", conflicts_with = "idle")]
    ack_log: Option<PathBuf>,
}

/// Where the echo baseline comes from.
enum Echo {
    None,
    InProcess { cpus: Vec<usize> },
    External(String),
}

/// The flags, checked once.
struct Settings {
    url: String,
    plan: Plan,
    idle: bool,
    server_pid: Option<u32>,
    echo: Echo,
    json: bool,
    ack_log: Option<PathBuf>,
}

impl RunArgs {
    fn validate(self) -> anyhow::Result<Settings> {
        let url = self.url.context("--url is required")?;
        let duration = self.duration.context("--duration is required")?;
        if !(duration > 0.0 && duration <= MAX_DURATION_SECS) {
            bail!("--duration must be more than 0 and at most {MAX_DURATION_SECS} seconds");
        }
        if !(self.warmup >= 0.0 && self.warmup <= MAX_DURATION_SECS) {
            bail!("--warmup must be 0 to {MAX_DURATION_SECS} seconds");
        }
        if self.visitors == 0 || self.visitors > MAX_VISITORS {
            bail!("--visitors must be 1 to {MAX_VISITORS}");
        }
        if !(self.timeout > 0.0 && self.timeout <= 600.0) {
            bail!("--timeout must be more than 0 and at most 600 seconds");
        }
        if self.connect_concurrency == 0 {
            bail!("--connect-concurrency must be at least 1");
        }
        if self.count == Some(0) {
            bail!("--count must be at least 1");
        }
        let pacing = match self.rate {
            Some(rate) if !(rate > 0.0 && rate.is_finite()) => {
                bail!("--rate must be a positive number of messages per second")
            }
            Some(rate) => Pacing::Open { rate },
            None => Pacing::Closed {
                think: Duration::from_millis(self.think_ms),
            },
        };
        if let Some(ip) = self.sources.iter().find(|ip| !ip.is_loopback()) {
            bail!("--sources: {ip} is not a loopback address; this tool only loads servers on this machine");
        }
        if let Some(cpu) = self.echo_cpus.iter().find(|&&c| c >= sys::MAX_CPUS) {
            bail!("--echo-cpus: no CPU {cpu}");
        }
        let echo = if self.no_echo || self.idle {
            Echo::None
        } else if let Some(u) = self.echo_url {
            Echo::External(u)
        } else {
            Echo::InProcess {
                cpus: self.echo_cpus,
            }
        };
        Ok(Settings {
            url,
            plan: Plan {
                visitors: self.visitors,
                duration: Duration::from_secs_f64(duration),
                warmup: Duration::from_secs_f64(self.warmup),
                pacing,
                count: self.count,
                timeout: Duration::from_secs_f64(self.timeout),
                sources: self.sources,
                connect_concurrency: self.connect_concurrency,
                escalate_every: self.escalate_every,
                vary_case: self.vary_case,
            },
            idle: self.idle,
            server_pid: self.server_pid,
            echo,
            json: self.json,
            ack_log: self.ack_log,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::EchoServer { listen }) => echo_server(listen).map(|()| ExitCode::SUCCESS),
        None => cli.run.validate().and_then(run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("frontdesk-load: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn echo_server(listen: SocketAddr) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        bail!("--listen {listen}: the echo server listens on loopback addresses only");
    }
    raise_open_files_limit(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(echo::serve_until_signal(listen))
}

/// Raises the open-files limit and warns if `needed` descriptors will not fit.
fn raise_open_files_limit(needed: u64) {
    match frontdesk::fdlimit::raise_open_files_limit() {
        Ok(limit) if limit < needed + SPARE_FDS => eprintln!(
            "frontdesk-load: warning: the open-files limit is {limit} but this run needs about {}; \
             expect failed connections (raise it with `ulimit -n` as root)",
            needed + SPARE_FDS
        ),
        Ok(_) => {}
        Err(e) => eprintln!(
            "frontdesk-load: warning: could not raise the open-files limit ({e}); \
             many visitors may fail to connect"
        ),
    }
}

fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    let visitors = settings.plan.visitors as u64;
    let in_process_echo = matches!(settings.echo, Echo::InProcess { .. });
    raise_open_files_limit(if in_process_echo {
        2 * visitors
    } else {
        visitors
    });

    // The in-process echo server gets its own runtime (and CPUs, if pinned),
    // started before the generator's because a runtime cannot be driven from inside another.
    let mut echo_runtime: Option<Runtime> = None;
    let echo_url = match &settings.echo {
        Echo::None => None,
        Echo::External(url) => Some(url.clone()),
        Echo::InProcess { cpus } => {
            let (rt, addr) = start_echo_in_process(cpus)?;
            echo_runtime = Some(rt);
            Some(format!("ws://{addr}/ws"))
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(async {
        let target = resolve(&settings.url).await?;
        if let Some(ip) = settings
            .plan
            .sources
            .iter()
            .find(|ip| ip.is_ipv4() != target.addr.is_ipv4())
        {
            bail!(
                "--sources: {ip} cannot reach {} (another address family)",
                target.addr
            );
        }
        if settings.idle {
            return Ok::<_, anyhow::Error>(run_idle(&settings, &target).await);
        }
        let echo_target = match &echo_url {
            Some(url) => Some(resolve(url).await.context("the echo server")?),
            None => None,
        };
        run_load(&settings, &target, echo_target.as_ref()).await
    })?;
    if let Some(rt) = echo_runtime {
        rt.shutdown_background();
    }
    Ok(code)
}

async fn run_idle(settings: &Settings, target: &Target) -> ExitCode {
    eprintln!(
        "frontdesk-load: opening {} idle connections to {}",
        settings.plan.visitors, target.url
    );
    let figures = idle::run(target, &settings.plan, settings.server_pid).await;
    if settings.json {
        println!("{}", report::idle_json(&figures));
    } else {
        print!("{}", report::idle_text(&figures));
    }
    if figures.connected == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run_load(
    settings: &Settings,
    target: &Target,
    echo_target: Option<&Target>,
) -> anyhow::Result<ExitCode> {
    let plan = &settings.plan;
    let acks = match &settings.ack_log {
        Some(path) => Some(Arc::new(
            AckLog::create(path).with_context(|| format!("--ack-log {}", path.display()))?,
        )),
        None => None,
    };
    let stop = Arc::new(Stop::default());
    stop_on_signal(stop.clone());
    let measure = |name: &'static str, t: Target, hooks: Hooks| async move {
        let warmup = if plan.warmup.is_zero() {
            String::new()
        } else {
            format!("{:.0} s of warm-up and ", plan.warmup.as_secs_f64())
        };
        eprintln!(
            "frontdesk-load: {name}: connecting {} visitors to {}, then {warmup}{:.0} s of load",
            plan.visitors,
            t.url,
            plan.duration.as_secs_f64()
        );
        let f = load::run_with(&t, plan, hooks).await;
        eprintln!(
            "frontdesk-load: {name}: {:.0} msgs/s, p99 {:.2} ms, {} errors",
            f.msgs_per_s, f.p99_ms, f.errors
        );
        f
    };
    let frontdesk_hooks = Hooks {
        acks,
        stop: stop.clone(),
    };
    let frontdesk = measure("frontdesk", target.clone(), frontdesk_hooks).await;
    let echo = match echo_target {
        Some(t) if !stop.is_set() => {
            tokio::time::sleep(BETWEEN_RUNS).await;
            let echo_hooks = Hooks {
                acks: None,
                stop: stop.clone(),
            };
            Some(measure("echo", t.clone(), echo_hooks).await)
        }
        _ => None,
    };
    let report = report::Report {
        title: title(settings, &target.url),
        frontdesk: &frontdesk,
        echo: echo.as_ref(),
    };
    if settings.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(if frontdesk.replies == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Ends the run early on SIGINT or SIGTERM: nothing more is sent, and the
/// figures so far are printed. A second signal exits at once.
fn stop_on_signal(stop: Arc<Stop>) {
    tokio::spawn(async move {
        frontdesk::server::shutdown_signal().await;
        eprintln!("frontdesk-load: stopping: collecting replies in flight (signal again to quit)");
        stop.trigger();
        frontdesk::server::shutdown_signal().await;
        std::process::exit(130);
    });
}

fn title(settings: &Settings, url: &str) -> String {
    let plan = &settings.plan;
    let pacing = match plan.pacing {
        Pacing::Closed { think } if think.is_zero() => "closed loop".to_string(),
        Pacing::Closed { think } => format!("closed loop, {} ms think time", think.as_millis()),
        Pacing::Open { rate } => format!("open loop at {rate} msgs/s"),
    };
    let count = plan
        .count
        .map(|c| format!(", at most {c} messages"))
        .unwrap_or_default();
    let warmup = if plan.warmup.is_zero() {
        String::new()
    } else {
        format!(" after {} s of warm-up", plan.warmup.as_secs_f64())
    };
    let echo = match &settings.echo {
        Echo::None => "no echo baseline".to_string(),
        Echo::External(u) => format!("echo baseline at {u}"),
        Echo::InProcess { cpus } if cpus.is_empty() => "echo baseline in-process".to_string(),
        Echo::InProcess { cpus } => format!("echo baseline in-process on CPUs {cpus:?}"),
    };
    format!(
        "{} visitors, {pacing}, {} s{warmup}{count}, {url}; {echo}",
        plan.visitors,
        plan.duration.as_secs_f64()
    )
}

/// Starts the echo server on 127.0.0.1:0 on a runtime of its own.
fn start_echo_in_process(cpus: &[usize]) -> anyhow::Result<(Runtime, SocketAddr)> {
    let workers = if cpus.is_empty() {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cpus.len()
    };
    let pin = cpus.to_vec();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("echo")
        .enable_all()
        .on_thread_start(move || {
            if !pin.is_empty() {
                if let Err(e) = sys::pin_current_thread(&pin) {
                    eprintln!("frontdesk-load: warning: echo thread not pinned to {pin:?}: {e}");
                }
            }
        })
        .build()?;
    let listener = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        socket.listen(1024)
    })?;
    let addr = listener.local_addr()?;
    runtime.spawn(echo::serve(listener));
    Ok((runtime, addr))
}

/// Parses a ws:// URL and resolves it to a loopback address.
async fn resolve(url: &str) -> anyhow::Result<Target> {
    let uri: tokio_tungstenite::tungstenite::http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => bail!("{url}: wss:// is not supported; load a local server over ws://"),
        _ => bail!("{url}: the URL must start with ws://"),
    }
    let host = uri.host().with_context(|| format!("{url}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(format!("{host}:{port}"))
        .await
        .with_context(|| format!("{url}: cannot resolve {host}"))?
        .collect();
    let Some(addr) = addrs.iter().copied().find(|a| a.ip().is_loopback()) else {
        bail!(
            "{url} resolves to {addrs:?}, not a loopback address; this tool only loads servers on this machine"
        );
    };
    Ok(Target {
        url: url.to_string(),
        addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let base = [
            "frontdesk-load",
            "--url",
            "ws://127.0.0.1:1/ws",
            "--duration",
            "5",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(args))?;
        cli.run.validate()
    }

    #[test]
    fn a_warm_up_is_measured_apart_from_the_duration() {
        let s = settings(&["--warmup", "2.5", "--rate", "100"]).unwrap();
        assert_eq!(s.plan.warmup, Duration::from_millis(2_500));
        assert_eq!(s.plan.duration, Duration::from_secs(5));
        assert!(title(&s, "ws://x/ws").contains("5 s after 2.5 s of warm-up"));
        assert_eq!(settings(&[]).unwrap().plan.warmup, Duration::ZERO);
    }

    #[test]
    fn a_warm_up_must_be_a_time_and_cannot_go_with_a_count_or_idle() {
        for bad in [
            &["--warmup", "-1"][..],
            &["--warmup", "NaN"],
            &["--warmup", "2", "--count", "10"],
            &["--warmup", "2", "--idle"],
        ] {
            assert!(settings(bad).is_err(), "{bad:?} accepted");
        }
    }
}
