//! Command-line parsing and dispatch.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use parallax_core::recipe::Recipe;
use parallax_core::{registry, trainer};

/// Contrastive and self-supervised representation learning on Candle.
#[derive(Parser, Debug)]
#[command(name = "parallax", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a recipe.
    Train {
        /// The recipe file (TOML).
        recipe: PathBuf,
        /// Override a recipe value: `--set train.epochs=5` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// The run directory (default: runs/NAME-N, the next free N).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Stop after this many optimizer steps (the schedule is unchanged).
        #[arg(long)]
        max_steps: Option<u64>,
        /// Continue the run in --out (default: the latest runs/NAME-N).
        #[arg(long)]
        resume: bool,
        /// Device: auto, cpu or cuda:N (overrides the recipe).
        #[arg(long)]
        device: Option<String>,
    },
    /// Write a grid of augmented views of a recipe's first images to a PNG
    /// (one row per view, one column per image).
    Views {
        /// The recipe file (TOML).
        recipe: PathBuf,
        /// Override a recipe value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// The PNG file to write.
        #[arg(long, default_value = "views.png")]
        out: PathBuf,
        /// Images (columns).
        #[arg(long, default_value_t = 8)]
        images: usize,
    },
    /// List registered components, optionally of one kind.
    List {
        /// data, views, encoders, heads, losses, methods, evaluators or loggers.
        kind: Option<String>,
    },
    /// Work with recipes.
    Recipe {
        #[command(subcommand)]
        command: RecipeCommand,
    },
    /// Check losses against reference fixtures (safetensors files or folders
    /// of them, in the format of tests/fixtures/losses/README.md).
    VerifyLoss {
        /// Fixture files or folders.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Benchmarks (print one JSON line each).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Write a finished run's encoder in its exchange layout (BERT: Hugging
    /// Face's config.json + model.safetensors + tokenizer files), loadable
    /// with `[encoder] pretrained = "DIR"` or by transformers /
    /// sentence-transformers.
    Export {
        /// The run directory (holds recipe.toml and checkpoint.safetensors).
        run_dir: PathBuf,
        /// The folder to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// The Hugging Face Hub (honours HF_ENDPOINT, HF_HOME / HF_HUB_CACHE,
    /// HF_TOKEN and HF_HUB_OFFLINE).
    Hub {
        #[command(subcommand)]
        command: HubCommand,
    },
    /// Evaluate a finished run with its recipe's evaluators.
    Eval {
        /// The run directory (holds recipe.toml and checkpoint.safetensors).
        run_dir: PathBuf,
        /// Device: auto, cpu or cuda:N.
        #[arg(long)]
        device: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// nt_xent forward + backward on random N x D embeddings.
    Loss {
        /// Examples per view.
        #[arg(long, default_value_t = 4096)]
        n: usize,
        /// Embedding size.
        #[arg(long, default_value_t = 128)]
        d: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
    },
    /// Full training steps (forward, backward, update) of a recipe on
    /// random images; by default the reference workload (SimCLR,
    /// CIFAR ResNet-18, two views, SGD) of recipes/bench/train_step.toml.
    TrainStep {
        /// Images per view.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Another recipe to time (its data source must give images).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Override a recipe value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Device: auto, cpu or cuda:N (overrides the recipe).
        #[arg(long)]
        device: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum HubCommand {
    /// Download a model's files into the Hub cache and print their paths.
    Pull {
        /// The repository, `owner/name`.
        repo: String,
        /// A branch, tag or commit (default: main).
        #[arg(long)]
        revision: Option<String>,
        /// Only these files (repeatable; default: config.json,
        /// model.safetensors, tokenizer.json and the tokenizer and
        /// sentence-transformers files the repository has).
        #[arg(long = "file")]
        files: Vec<String>,
        /// Use only the cache (as HF_HUB_OFFLINE=1).
        #[arg(long)]
        offline: bool,
    },
}

#[derive(Subcommand, Debug)]
enum RecipeCommand {
    /// Print the resolved recipe (defaults, file, environment, --set).
    Show {
        /// The recipe file.
        recipe: PathBuf,
        /// Override a recipe value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
}

/// Parses the arguments, runs the command and prints any error with its causes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    registry::check().context("the plugin registry is inconsistent")?;
    match cli.command {
        Command::Train {
            recipe,
            sets,
            out,
            max_steps,
            resume,
            device,
        } => train(&recipe, &sets, out, max_steps, resume, device),
        Command::Views {
            recipe,
            sets,
            out,
            images,
        } => {
            let r = load_recipe(&recipe, &sets)?;
            let grid = trainer::preview_views(&r, images)
                .with_context(|| format!("cannot draw the views of {}", recipe.display()))?;
            let png = parallax_core::logging::tensorboard::encode_png(&grid)?;
            parallax_core::checkpoint::write_atomic(&out, &png)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "wrote {} ({} x {} pixels; one row per view, one column per image)",
                out.display(),
                grid.width,
                grid.height
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::List { kind } => list(kind.as_deref()),
        Command::Recipe {
            command: RecipeCommand::Show { recipe, sets },
        } => {
            let r = load_recipe(&recipe, &sets)?;
            print!("{}", r.to_toml_string());
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyLoss { files } => Ok(if crate::cmd_verify_loss::run(&files)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Command::Bench {
            command:
                BenchCommand::Loss {
                    n,
                    d,
                    steps,
                    warmup,
                },
        } => {
            crate::cmd_bench_loss::run(n, d, steps, warmup)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::TrainStep {
                    batch,
                    steps,
                    warmup,
                    recipe,
                    sets,
                    device,
                },
        } => {
            crate::cmd_bench_train_step::run(&crate::cmd_bench_train_step::TrainStepArgs {
                recipe: recipe.as_deref(),
                sets: &sets,
                batch,
                steps,
                warmup,
                device: device.as_deref(),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Hub {
            command:
                HubCommand::Pull {
                    repo,
                    revision,
                    files,
                    offline,
                },
        } => {
            crate::cmd_hub::run(&repo, revision.as_deref(), &files, offline)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { run_dir, out } => {
            let files = trainer::export_run(&run_dir, &out)
                .with_context(|| format!("cannot export {}", run_dir.display()))?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval { run_dir, device } => {
            let m = trainer::evaluate_run(&run_dir, device.as_deref())
                .with_context(|| format!("cannot evaluate {}", run_dir.display()))?;
            for (k, v) in m {
                println!("{k} = {v:.4}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `runs/NAME-N` directories that exist, by N.
fn existing_runs(name: &str) -> Vec<(u32, PathBuf)> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir("runs")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let f = e.file_name().to_string_lossy().to_string();
            let n = f.strip_prefix(&format!("{name}-"))?.parse::<u32>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// Loads a recipe with the environment and `--set` layers, printing the
/// recipe's notes (environment variables that are not read) as warnings.
pub(crate) fn load_recipe(path: &Path, sets: &[String]) -> Result<Recipe> {
    let recipe =
        Recipe::load(path, sets).with_context(|| format!("cannot load {}", path.display()))?;
    for note in &recipe.notes {
        eprintln!("warning: {note}");
    }
    Ok(recipe)
}

fn train(
    recipe_path: &Path,
    sets: &[String],
    out: Option<PathBuf>,
    max_steps: Option<u64>,
    resume: bool,
    device: Option<String>,
) -> Result<ExitCode> {
    let recipe = load_recipe(recipe_path, sets)?;
    let runs = existing_runs(&recipe.name);
    let run_dir = match (out, resume) {
        (Some(o), _) => o,
        (None, true) => match runs.last() {
            Some((_, p)) => p.clone(),
            None => bail!(
                "--resume: no earlier run of `{}` under runs/; name it with --out",
                recipe.name
            ),
        },
        (None, false) => {
            let n = runs.last().map_or(1, |(n, _)| n + 1);
            PathBuf::from("runs").join(format!("{}-{n}", recipe.name))
        }
    };
    let stop = crate::signals::install().context("cannot install the signal handlers")?;
    let opts = trainer::TrainOptions {
        run_dir: run_dir.clone(),
        max_steps,
        resume,
        device,
        stop: Some(stop.flag()),
    };
    let outcome = trainer::train(&recipe, &opts)
        .with_context(|| format!("training {} failed", recipe_path.display()))?;
    println!("run directory: {}", outcome.run_dir.display());
    println!("steps: {}", outcome.step);
    if outcome.stopped {
        eprintln!(
            "stopped by {} after step {}: checkpoint written; continue with `parallax train {} --out {} --resume`",
            stop.signal_name(),
            outcome.step,
            recipe_path.display(),
            outcome.run_dir.display()
        );
        return Ok(ExitCode::from(crate::signals::STOPPED_EXIT_CODE));
    }
    for (k, v) in &outcome.metrics {
        match outcome.init_metrics.iter().find(|(ik, _)| ik == k) {
            Some((_, init)) => println!("{k} = {v:.4} (before training: {init:.4})"),
            None => println!("{k} = {v:.4}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn kind_of(arg: &str) -> Option<&'static str> {
    let a = arg.to_lowercase().replace(['-', '_', ' '], "");
    Some(match a.as_str() {
        "data" | "datasource" | "datasources" | "source" | "sources" => "data source",
        "view" | "views" | "viewgenerator" | "viewgenerators" => "view generator",
        "encoder" | "encoders" => "encoder",
        "head" | "heads" => "head",
        "loss" | "losses" => "loss",
        "method" | "methods" => "method",
        "evaluator" | "evaluators" | "eval" => "evaluator",
        "logger" | "loggers" => "logger",
        "loop" | "loops" | "trainingloop" | "trainingloops" => "loop",
        "graphdata" | "graphs" | "graph" => "graph data",
        "graphencoder" | "graphencoders" => "graph encoder",
        "graphmethod" | "graphmethods" => "graph method",
        "graphevaluator" | "graphevaluators" | "grapheval" => "graph evaluator",
        _ => return None,
    })
}

fn list(kind: Option<&str>) -> Result<ExitCode> {
    let want = match kind {
        Some(k) => Some(kind_of(k).with_context(|| {
            format!("unknown kind `{k}`; kinds: data, views, encoders, heads, losses, methods, evaluators, loggers, loops, graph-data, graph-encoders, graph-methods, graph-evaluators")
        })?),
        None => None,
    };
    for (k, entries) in registry::all() {
        if want.is_some_and(|w| w != k) {
            continue;
        }
        let plural = if k.ends_with("data") {
            k.to_string()
        } else if k.ends_with('s') {
            format!("{k}es")
        } else {
            format!("{k}s")
        };
        println!("{plural}:");
        for (name, desc) in entries {
            println!("  {name:<24} {desc}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
