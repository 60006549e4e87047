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
                let kind = match s.kind {
                    engine::SourceKind::Intent => "intent",
                    engine::SourceKind::Article => "article",
                };
                println!("source: {kind} {}", s.id);
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
