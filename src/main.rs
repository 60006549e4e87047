//! The `frontdesk` command line: wires configuration, content and the server
//! together. Everything it calls lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use frontdesk::config::Config;
use frontdesk::content::Content;
use frontdesk::engine::{self, Context};

#[derive(Parser)]
#[command(
    name = "frontdesk",
    version,
    about = "Self-hosted support chatbot server"
)]
struct Cli {
    /// Configuration file (default: frontdesk.toml if it exists).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve visitors (the default).
    Serve(ServeArgs),
    /// Validate and lint the content; non-zero exit on errors (and with --strict, on warnings).
    Check {
        #[command(flatten)]
        content: ContentArgs,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Run conversation tests (TOML) against the engine; default: tests/conversations/.
    Test {
        /// Test files or directories.
        files: Vec<PathBuf>,
        #[command(flatten)]
        content: ContentArgs,
    },
    /// Show the decision for one visitor message.
    Ask {
        /// The visitor's message.
        text: String,
        /// Print the rules and articles that scored, with their scores and the thresholds.
        #[arg(long)]
        explain: bool,
        #[command(flatten)]
        content: ContentArgs,
    },
    /// Delete one conversation and everything stored with it.
    Forget {
        /// The conversation id (as in the widget's welcome frame).
        conversation_id: String,
        /// Data directory (the database lives here).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Manage the agents who sign in to the console at /agent.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
        /// Data directory (the database lives here).
        #[arg(long, global = true)]
        data: Option<PathBuf>,
    },
    /// Deflection rate, CSAT, queue wait and answers per intent and article, from the database.
    Stats {
        #[command(flatten)]
        period: PeriodArgs,
        /// Rows per hour or per day.
        #[arg(long, default_value = "day")]
        bucket: String,
        /// Print JSON (as /api/stats does) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Questions nothing answered well, grouped and ranked: what to write next.
    Gaps {
        #[command(flatten)]
        period: PeriodArgs,
        /// Groups shown at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        content: ContentArgs,
        /// Print JSON (as /api/gaps does).
        #[arg(long)]
        json: bool,
    },
    /// Measure answer quality on labelled phrasings (JSON lines of text and expect).
    Eval {
        /// The eval file.
        file: PathBuf,
        #[command(flatten)]
        content: ContentArgs,
        /// Print the summary and one JSON result per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Add an agent and print their sign-in token (shown once; only its hash is stored).
    Add {
        /// The agent's name, as visitors and colleagues see it.
        name: String,
        /// May also open the /admin dashboard.
        #[arg(long)]
        admin: bool,
    },
    /// List the agents.
    List,
    /// Remove an agent; the conversations they held go back to the queue.
    Remove { name: String },
}

#[derive(Args, Default)]
struct PeriodArgs {
    /// Data directory (the database lives here).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Start: 2026-11-01, 2026-11-01T09:00:00Z or epoch milliseconds (default: a week or a month before --to).
    #[arg(long)]
    from: Option<String>,
    /// End, exclusive (default: now).
    #[arg(long)]
    to: Option<String>,
}

impl PeriodArgs {
    fn range(&self, default_days: i64) -> anyhow::Result<(i64, i64)> {
        let parse = |s: &String| frontdesk::analytics::parse_time(s).map_err(anyhow::Error::msg);
        let to = match &self.to {
            Some(t) => parse(t)?,
            None => frontdesk::store::now_ms(),
        };
        let from = match &self.from {
            Some(f) => parse(f)?,
            None => to - default_days * 86_400_000,
        };
        anyhow::ensure!(from < to, "--from must be before --to");
        Ok((from, to))
    }

    fn reader(&self, config: &Config) -> anyhow::Result<frontdesk::store::Reader> {
        let dir = self.data.clone().unwrap_or_else(|| config.data_dir.clone());
        Ok(frontdesk::store::Reader::open(&dir)?)
    }
}

#[derive(Args, Default)]
struct ContentArgs {
    /// Intents file (default: from the configuration).
    #[arg(long)]
    intents: Option<PathBuf>,
    /// Knowledge-base directory (default: from the configuration).
    #[arg(long)]
    kb: Option<PathBuf>,
}

#[derive(Args, Default)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory (the database lives here).
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    content: ContentArgs,
}

/// mimalloc instead of the C library's allocator: the server allocates and
/// frees small buffers on one thread and frees some on another for every
/// message, and glibc's malloc spent a sixth of the message path on it
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // Output piped into `head` and the like: stop quietly.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `f` against the store in `config.data_dir`, then flushes it.
fn with_store<T>(
    config: &Config,
    f: impl AsyncFnOnce(&frontdesk::store::Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (store, writer) = frontdesk::store::Store::open(&config.data_dir, &config.store)?;
    let out = runtime.block_on(f(&store));
    drop(store);
    writer.join();
    out
}

fn agent_command(config: &Config, command: AgentCommand) -> anyhow::Result<ExitCode> {
    use frontdesk::handoff::{hash_token, random_token};
    match command {
        AgentCommand::Add { name, admin } => {
            let name = name.trim().to_string();
            if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
                anyhow::bail!("an agent name is 1 to 64 printable characters");
            }
            let token = random_token(32);
            let hash = hash_token(&token);
            let added = with_store(config, async |s| {
                Ok(s.add_agent(name.clone(), hash, admin).await?)
            })?;
            if !added {
                anyhow::bail!("there is already an agent named {name:?}; remove them first to issue a new token");
            }
            println!("added agent {name}{}", if admin { " (admin)" } else { "" });
            println!("sign-in token (shown only now; keep it secret):");
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::List => {
            let agents = with_store(config, async |s| Ok(s.agents().await?))?;
            if agents.is_empty() {
                println!("no agents; add one with `frontdesk agent add NAME`");
            }
            for a in agents {
                let added = jiff::Timestamp::from_millisecond(a.created_at)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default();
                println!(
                    "{}\t{}\tadded {added}",
                    a.name,
                    if a.admin { "admin" } else { "agent" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Remove { name } => {
            let removed = with_store(config, async |s| Ok(s.remove_agent(name.clone()).await?))?;
            if removed {
                println!("removed agent {name}; their conversations are back in the queue");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("no agent named {name:?}");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn percent(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn seconds(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.1}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

fn day_or_hour(ms: i64, bucket: frontdesk::analytics::Bucket) -> String {
    let t = jiff::Timestamp::from_millisecond(ms).unwrap_or_default();
    match bucket {
        frontdesk::analytics::Bucket::Day => t.strftime("%Y-%m-%d").to_string(),
        frontdesk::analytics::Bucket::Hour => t.strftime("%Y-%m-%d %H:00").to_string(),
    }
}

fn print_stats(s: &frontdesk::analytics::Stats) {
    let t = &s.totals;
    println!(
        "{} to {} (UTC), conversations closed in that time",
        day_or_hour(s.from, frontdesk::analytics::Bucket::Hour),
        day_or_hour(s.to, frontdesk::analytics::Bucket::Hour)
    );
    println!();
    println!(
        "deflection rate      {:>8}  ({} of {}: {} confirmed helpful, {} assumed)",
        percent(t.deflection_rate),
        t.deflected,
        t.conversations,
        t.deflected_confirmed,
        t.deflected_assumed
    );
    println!(
        "confirmed resolution {:>8}",
        percent(t.confirmed_resolution_rate)
    );
    let reasons: Vec<String> = t
        .escalated_by_reason
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    println!(
        "escalated            {:>8}  ({})",
        t.escalated,
        reasons.join(", ")
    );
    println!("unanswered           {:>8}", t.unanswered);
    println!(
        "greeting only        {:>8}  (counted in none of the above)",
        t.no_question
    );
    println!(
        "CSAT                 {:>8}  ({} ratings, mean {})",
        percent(t.csat.satisfied),
        t.csat.responses,
        t.csat
            .mean
            .map(|m| format!("{m:.2}"))
            .unwrap_or_else(|| "-".into())
    );
    println!(
        "queue wait           {:>8}  median, {} p90 ({} conversations)",
        seconds(t.queue_wait.median_seconds),
        seconds(t.queue_wait.p90_seconds),
        t.queue_wait.count
    );
    println!(
        "resolution time      {:>8}  median, {} p90",
        seconds(t.resolution_time.median_seconds),
        seconds(t.resolution_time.p90_seconds)
    );
    println!();
    println!(
        "{:<17} {:>6} {:>9} {:>10} {:>9} {:>10} {:>6} {:>8}",
        "period", "convs", "deflected", "deflection", "escalated", "unanswered", "CSAT", "wait"
    );
    for p in &s.series {
        let m = &p.summary;
        if m.conversations == 0 && m.no_question == 0 {
            continue;
        }
        println!(
            "{:<17} {:>6} {:>9} {:>10} {:>9} {:>10} {:>6} {:>8}",
            day_or_hour(p.start, s.bucket),
            m.conversations,
            m.deflected,
            percent(m.deflection_rate),
            m.escalated,
            m.unanswered,
            percent(m.csat.satisfied),
            seconds(m.queue_wait.median_seconds)
        );
    }
    for (heading, rows) in [("intents", &s.intents), ("articles", &s.articles)] {
        if rows.is_empty() {
            continue;
        }
        println!();
        println!(
            "{:<48} {:>8} {:>8} {:>12}",
            heading, "answered", "helpful", "not helpful"
        );
        for r in rows.iter().take(20) {
            println!(
                "{:<48} {:>8} {:>8} {:>12}",
                r.id, r.answered, r.helpful, r.not_helpful
            );
        }
    }
}

fn print_gaps(gaps: &[frontdesk::analytics::Gap], questions: usize) {
    if gaps.is_empty() {
        println!("no unanswered or not-helpful questions in this period");
        return;
    }
    println!(
        "{questions} unanswered or not-helpful questions, in {} groups, largest first",
        gaps.len()
    );
    for (i, g) in gaps.iter().enumerate() {
        println!();
        println!(
            "{}. {} asked ({} unanswered, {} not helpful)  terms: {}",
            i + 1,
            g.count,
            g.unanswered,
            g.not_helpful,
            g.terms.join(" ")
        );
        for e in &g.examples {
            println!("     \"{e}\"");
        }
        match &g.nearest_article {
            Some(n) => println!(
                "   nearest article: {} ({}), confidence {:.2}",
                n.id, n.title, n.confidence
            ),
            None => println!("   nearest article: none"),
        }
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None if Path::new("frontdesk.toml").exists() => {
            Ok(Config::load(Path::new("frontdesk.toml"))?)
        }
        None => Ok(Config::default()),
    }
}

fn apply_content(config: &mut Config, args: &ContentArgs) {
    if let Some(i) = &args.intents {
        config.intents = i.clone();
    }
    if let Some(k) = &args.kb {
        config.knowledge_base = k.clone();
    }
}

fn load_content(config: &Config) -> anyhow::Result<Content> {
    Content::load(&config.intents, &config.knowledge_base).map_err(|e| anyhow::anyhow!("{e}"))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = load_config(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            apply_content(&mut config, &args.content);
            if let Some(l) = args.listen {
                config.listen = l;
            }
            if let Some(d) = args.data {
                config.data_dir = d;
            }
            frontdesk::server::serve_main(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { content, strict } => {
            apply_content(&mut config, &content);
            let content = match Content::load(&config.intents, &config.knowledge_base) {
                Ok(c) => c,
                Err(e) => {
                    println!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let warnings = frontdesk::check::lint(&content, &config.intents);
            for w in &warnings {
                println!("{w}");
            }
            let unfiltered: Vec<_> = content.intents.unfiltered_patterns().collect();
            if !unfiltered.is_empty() {
                println!(
                    "note: {} pattern(s) have no literal start and run on every message (slower with many intents):",
                    unfiltered.len()
                );
                for (intent, src) in unfiltered.iter().take(10) {
                    println!("  {}: {src}", intent.id);
                }
            }
            println!(
                "{}: {} intents, {} sensitive rules, {} articles, {} warning(s)",
                if warnings.is_empty() { "ok" } else { "loaded" },
                content.intents.intents.len(),
                content.intents.sensitive.rules.len(),
                content.kb.documents().count(),
                warnings.len()
            );
            Ok(if strict && !warnings.is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Test { files, content } => {
            apply_content(&mut config, &content);
            let content = load_content(&config)?;
            let roots = if files.is_empty() {
                vec![PathBuf::from("tests/conversations")]
            } else {
                files
            };
            let mut all = Vec::new();
            for root in &roots {
                all.extend(frontdesk::convtest::discover(root)?);
            }
            if all.is_empty() {
                anyhow::bail!("no conversation test files found");
            }
            let report = frontdesk::convtest::run(&all, &content, &config.engine)?;
            println!("{}", report.render());
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Stats {
            period,
            bucket,
            json,
        } => {
            let (from, to) = period.range(7)?;
            let bucket =
                frontdesk::analytics::Bucket::parse(&bucket).map_err(anyhow::Error::msg)?;
            let reader = period.reader(&config)?;
            let stats = reader.with(|c| frontdesk::analytics::stats(c, from, to, bucket))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print_stats(&stats);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gaps {
            period,
            limit,
            content,
            json,
        } => {
            apply_content(&mut config, &content);
            let (from, to) = period.range(30)?;
            let reader = period.reader(&config)?;
            let questions = reader.with(|c| frontdesk::analytics::questions(c, from, to))?;
            let content = load_content(&config)?;
            let gaps = frontdesk::analytics::group(&questions, Some(&content), limit);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"from": from, "to": to, "gaps": gaps})
                    )?
                );
            } else {
                print_gaps(&gaps, questions.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent { command, data } => {
            if let Some(d) = data {
                config.data_dir = d;
            }
            agent_command(&config, command)
        }
        Command::Forget {
            conversation_id,
            data,
        } => {
            if let Some(d) = data {
                config.data_dir = d;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (store, writer) = frontdesk::store::Store::open(&config.data_dir, &config.store)?;
            let found = runtime.block_on(store.forget(conversation_id.clone()))?;
            drop(store);
            writer.join();
            if found {
                println!("deleted conversation {conversation_id} and everything stored with it");
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "no conversation {conversation_id} in {}",
                    config.data_dir.display()
                );
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Ask {
            text,
            explain,
            content,
        } => {
            apply_content(&mut config, &content);
            let content = load_content(&config)?;
            let d = engine::decide(&content, &Context::default(), &text, &config.engine);
            println!("{}: {}", d.kind.as_str(), d.text);
            if let Some(s) = &d.source {
                println!("source: {} {}", s.kind.as_str(), s.id);
                if let Some(url) = &s.url {
                    println!("url: {url}");
                }
            }
            for q in &d.quick_replies {
                println!("  [{}] -> {}", q.label, q.value);
            }
            if let Some(r) = d.escalation {
                println!("escalation: {}", r.as_str());
            }
            if explain {
                println!("\nwhy: {}", d.explanation.rule);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&d.explanation).context("explanation")?
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            file,
            content,
            json,
        } => {
            apply_content(&mut config, &content);
            let content = load_content(&config)?;
            let (summary, results) = frontdesk::eval::run(&file, &content, &config.engine)?;
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::json!({ "summary": summary }))?;
                for r in &results {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
            } else {
                writeln!(out, "{summary}")?;
                let wrong: Vec<_> = results.iter().filter(|r| !r.correct).collect();
                if !wrong.is_empty() {
                    writeln!(out, "\nmisses:")?;
                    for r in wrong.iter().take(40) {
                        writeln!(
                            out,
                            "  {:<8} {:.2} {:?} expected {} got {}",
                            r.kind.as_str(),
                            r.score,
                            r.text,
                            r.expect,
                            r.source.as_deref().unwrap_or(if r.choices.is_empty() {
                                "-"
                            } else {
                                "choices"
                            })
                        )?;
                    }
                    if wrong.len() > 40 {
                        println!("  ... and {} more (--json lists all)", wrong.len() - 40);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
